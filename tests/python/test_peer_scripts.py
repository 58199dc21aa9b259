"""The peer benchmark's scripts (benchmarks/run_peer.sh, benchmarks/peer/) without llama.cpp: CI
never builds it. The shell scripts parse and answer --help without building or downloading
anything; peer_bench.py's arithmetic (ratios, roofline fractions) and table rendering run on
stand-in benchmark binaries that print the JSON shapes decode_bench, machine_bench and llama-bench
print, with figures chosen here so the expected ratios are known."""

import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.environ.get("TESSERA_SOURCE_DIR",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPTS = ["benchmarks/run_peer.sh", "benchmarks/peer/build_llama_cpp.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", os.path.join(ROOT, script)], check=True)


def test_help_builds_nothing(tmp_path):
    env = dict(os.environ, PEER_DIR=str(tmp_path / "peer"), TESSERA_PYTHON=sys.executable)
    for script in SCRIPTS:
        r = subprocess.run(["bash", os.path.join(ROOT, script), "--help"], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "llama" in r.stdout
    r = subprocess.run(["bash", os.path.join(ROOT, "benchmarks/run_peer.sh"), "--help"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert "--concurrencies" in r.stdout  # peer_bench.py's own options follow
    r = subprocess.run(["bash", os.path.join(ROOT, "benchmarks/peer/build_llama_cpp.sh"),
                        "--print-dir"], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == str(tmp_path / "peer" / "bin")
    assert not (tmp_path / "peer").exists()  # neither call downloaded or built anything
    r = subprocess.run(["bash", os.path.join(ROOT, "benchmarks/peer/build_llama_cpp.sh"), "--x"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "unknown argument" in r.stderr


def stand_in(path, payload):
    """An executable that prints payload (JSON) whatever its arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({json.dumps(payload)!r})\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def fake_build(build, reads):
    """A build dir whose tessera, machine_bench (reads: name -> bytes/s) and decode_bench stand
    in: 100 tok/s decode streaming 5 GB/s (50 MB per token), 300 tok/s prefill of 128."""
    stand_in(build / "tessera", {})
    stand_in(build / "benchmarks" / "machine_bench", {"benchmarks": [
        {"name": n, "bytes_per_second": v} for n, v in reads.items()]})
    stand_in(build / "benchmarks" / "decode_bench", {"benchmarks": [
        {"name": "BM_Decode/threads:1/batch:1/int8:1/iterations:60/real_time",
         "items_per_second": 100.0, "weight_GB/s": 5.0, "label": "int8 avx2"},
        {"name": "BM_Prefill/threads:1/tokens:128/int8:1/iterations:5/real_time",
         "items_per_second": 300.0, "label": "int8 avx2"}]})


def test_ratios_and_roofline(tmp_path):
    build, peer = tmp_path / "build", tmp_path / "peer"
    # Roofline at 1 thread: 10e9 / 50e6 = 200 tok/s.
    fake_build(build, {"BM_MemoryRead/1/real_time": 10e9, "BM_MemoryRead/0/real_time": 20e9})
    stand_in(peer / "llama-bench", [
        {"build_commit": "abc", "build_number": 1, "backends": "CPU", "cpu_info": "x",
         "n_prompt": 128, "n_gen": 0, "avg_ts": 200.0},
        {"build_commit": "abc", "build_number": 1, "backends": "CPU", "cpu_info": "x",
         "n_prompt": 0, "n_gen": 64, "avg_ts": 80.0}])
    stand_in(peer / "llama-server", {})
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks/peer/peer_bench.py"), "--build",
           str(build), "--peer-bin", str(peer), "--model", str(model), "--threads", "1",
           "--prefills", "128", "--repeats", "1", "--skip-serving"]
    r = subprocess.run(cmd + ["--json", "--save", str(tmp_path / "s.json")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)  # --json: nothing but JSON on stdout
    (p,) = j["speed"]
    assert p["ratio"]["tg"] == pytest.approx(100 / 80)
    assert p["ratio"]["pp128"] == pytest.approx(300 / 200)
    assert p["roofline_tok_s"] == pytest.approx(200)
    assert p["tessera"]["roofline_fraction"] == pytest.approx(0.5)
    assert p["llama.cpp"]["roofline_fraction"] == pytest.approx(0.4)
    assert json.loads((tmp_path / "s.json").read_text()) == j
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/peer/peer_bench.py"),
                        "--from-json", str(tmp_path / "s.json")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 1 | decode (tg64) | 100.0 | 80.0 | 1.25 | 200 | 0.50 | 0.40 |" in r.stdout
    assert "| 1 | 1 | prefill 128 (pp128) | 300.0 | 200.0 | 1.50 |" in r.stdout


def test_llama_no_repack_times_decode_both_ways(tmp_path):
    """--llama-no-repack: llama-bench's prefill runs with --repack 0, its decode both ways and the
    faster counts; the working-set read joins the roofline."""
    build, peer = tmp_path / "build", tmp_path / "peer"
    fake_build(build, {"BM_MemoryRead/1/real_time": 10e9,
                       "BM_WorkingSetReadPrefetched/1/real_time": 20e9})
    common = {"build_commit": "abc", "build_number": 1, "backends": "CPU", "cpu_info": "x"}
    without = [dict(common, n_prompt=128, n_gen=0, avg_ts=200.0),
               dict(common, n_prompt=0, n_gen=64, avg_ts=40.0)]
    with_repack = [dict(common, n_prompt=0, n_gen=64, avg_ts=90.0)]
    peer.mkdir(parents=True)
    (peer / "llama-bench").write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"sys.stdout.write({json.dumps(json.dumps(without))} if '--repack' in sys.argv "
        f"else {json.dumps(json.dumps(with_repack))})\n")
    (peer / "llama-bench").chmod(0o755)
    stand_in(peer / "llama-server", {})
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/peer/peer_bench.py"),
                        "--build", str(build), "--peer-bin", str(peer), "--model", str(model),
                        "--threads", "1", "--prefills", "128", "--repeats", "1",
                        "--skip-serving", "--llama-no-repack", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    (p,) = j["speed"]
    assert j["llama_repack"] is False
    assert p["llama.cpp"]["tg_no_repack"] == 40.0 and p["llama.cpp"]["tg_repack"] == 90.0
    assert p["ratio"]["tg"] == pytest.approx(100 / 90)  # against the faster of the two
    assert p["ratio"]["pp128"] == pytest.approx(300 / 200)
    assert p["roofline_tok_s"] == pytest.approx(20e9 / 50e6)  # the working-set read, not DRAM's


def test_missing_peer_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/peer/peer_bench.py"),
                        "--build", str(tmp_path), "--peer-bin", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "build_llama_cpp.sh" in r.stderr
