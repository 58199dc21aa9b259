"""The soak with faults (scripts/soak.py, `make soak`) in short: ~40 s of Poisson load at half the
measured capacity on the default model while the worker is stopped (SIGSTOP) once and killed
(SIGKILL) once. Every request must end complete or with a clear error (none lost), the KV cache
must be empty afterwards, each fault must cost exactly one worker restart, and the server must
still answer. Also checks the request classification on hand-made bench records."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import BIN, MODEL  # noqa: E402

SRC = Path(os.environ.get("TESSERA_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SCRIPT = SRC / "scripts" / "soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_classification_of_bench_records():
    soak = load_soak()
    ok = {"success": True, "error": None, "error_message": ""}
    assert soak.classify(ok) == "succeeded"
    clear = [{"success": False, "error": "http_503", "error_message": "the engine is not ready"},
             {"success": False, "error": "stream_error",
              "error_message": '"the engine failed request x: worker failed"'}]
    for r in clear:
        assert soak.classify(r) == "failed_clear", r
    unclear = [{"success": False, "error": "http_500", "error_message": ""},
               {"success": False, "error": "http_502", "error_message": "<html>bad gateway</html>"},
               {"success": False, "error": "http_500", "error_message": '{"detail": "x"}'}]
    for r in unclear:
        assert soak.classify(r) == "unclear", r
    for kind in ["timeout", "connect", "disconnected", "bad_response", "cancelled", None]:
        assert soak.classify({"success": False, "error": kind, "error_message": "x"}) == "lost", kind


@pytest.mark.skipif(not os.path.exists(BIN), reason=f"{BIN} not built")
@pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")
def test_short_soak_with_a_stop_and_a_kill(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--bin", BIN, "--json", "--workdir", str(tmp_path),
           "--duration", "40", "--fault-every", "20", "--fault-kinds", "stop,kill",
           "--capacity-seconds", "10", "--capacity-concurrency", "4", "--load-fraction", "0.5",
           "--timeout", "60", "--recover-timeout", "40", "--seed", "7"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    sys.stderr.write(p.stderr[-6000:])
    r = json.loads(p.stdout)  # stdout is the JSON and nothing else
    q, f, end = r["requests"], r["faults"], r["end"]
    assert q["sent"] > 0 and q["succeeded"] > 0
    assert q["sent"] == q["succeeded"] + q["failed_clear"] + q["unclear"] + q["lost"]
    assert q["lost"] == 0, r["lost_requests"]
    assert q["unclear"] == 0, r["lost_requests"]
    assert f["injected"] == 2 and f["stop"] == 1 and f["kill"] == 1
    assert f["worker_restarts"] == f["injected"]
    assert all(e["recovered_s"] is not None and e["old_worker_state"] is None for e in f["events"])
    assert f["events"][0]["new_worker_pid"] != f["events"][0]["worker_pid"]
    assert end["kv_blocks_leaked"] == 0 and end["drained"]
    assert end["requests_running"] == 0 and end["requests_waiting"] == 0
    assert end["live_workers"] == 1 and not end["zombie_children"]
    assert end["health"] == 200 and end["ready"] == 200 and end["final_request_ok"]
    assert r["server_alive_at_end"] and r["server_exit"] == 0
    assert not r["workers_left_after_exit"]
    assert r["rss_kib"]["server_start"] and r["rss_kib"]["server_end"]
    assert r["ok"] and r["problems"] == [] and p.returncode == 0, r["problems"]
