"""Expert parallelism behind the real server (tiny generated Mixtral, `parallel: {expert: 2}`,
two worker processes over Gloo): the greedy completion is the single-process one, each expert's
tokens are counted once (by its owner), and a rank that stops mid-step fails that step with an
error naming it, after which the group restarts and serves the same answer again."""

import json
import os
import signal
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import BIN, launch  # noqa: E402
from test_tiny_moe import make, expert_counts  # noqa: E402
from test_worker_group_serve import metric, worker_pids  # noqa: E402

PROMPT = "the lazy dog jumps 0123 over quick brown"


def complete(url, model, n=6):
    return requests.post(url + "/v1/completions", json={"model": model, "prompt": PROMPT,
                                                       "max_tokens": n, "temperature": 0}, timeout=60)


def test_ep2_serves_counts_and_restarts_after_a_rank_stops_mid_step(tmp_path):
    spec = make(tmp_path, "mixtral", experts=4, top_k=2, layers=2)
    model = str(tmp_path / "hf")
    solo = subprocess.run([BIN, "generate", "--model", model, "--prompt", PROMPT, "--max-tokens", "6",
                           "--temperature", "0", "--json"], capture_output=True, text=True, check=True)
    want = json.loads(solo.stdout.strip().splitlines()[-1])["text"]
    cfg = tmp_path / "ep2.yaml"
    cfg.write_text("\n".join([
        f"model: {{path: '{model}'}}", "backend: cpu", "parallel: {expert: 2}",
        "coordinator: {collective_timeout_s: 2, heartbeat_s: 0.5}",
        "scheduler: {kv_cache_mb: 4}", "threads_per_rank: 1"]) + "\n")
    proc, url, _ = launch(["--config", str(cfg), "--http-port", "0", "--no-warmup"])
    try:
        before = expert_counts(url)
        r = complete(url, model)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["text"] == want
        after = expert_counts(url)
        fed_min = body["usage"]["prompt_tokens"]
        fed_max = fed_min + body["usage"]["completion_tokens"]
        for layer in range(spec.layers):
            delta = [after.get((layer, e), 0) - before.get((layer, e), 0) for e in range(spec.experts)]
            # Counted once: both ranks counting every expert would double the sum.
            assert spec.top_k * fed_min <= sum(delta) <= spec.top_k * fed_max, (layer, delta)

        pids = worker_pids(proc.pid)
        assert sorted(pids) == [0, 1]
        restarts = metric(url, "tessera:worker_restarts_total") or 0.0
        os.kill(pids[1], signal.SIGSTOP)  # alive but silent: rank 0 waits in the all-reduce
        try:
            t0 = time.time()
            r = complete(url, model)
            assert r.status_code >= 500, r.text
            assert "rank 1" in r.text, r.text
            assert time.time() - t0 < 20
            print("step error:", r.text)
        finally:
            try:
                os.kill(pids[1], signal.SIGKILL)
            except ProcessLookupError:
                pass  # the engine already killed and reaped it
        deadline = time.time() + 120
        while time.time() < deadline:
            if (metric(url, "tessera:worker_restarts_total") or 0.0) > restarts and \
                    requests.get(url + "/ready", timeout=10).status_code == 200:
                break
            time.sleep(0.1)
        r = complete(url, model)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == want
        new = worker_pids(proc.pid)
        assert sorted(new) == [0, 1] and new[1] != pids[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
