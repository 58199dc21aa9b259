"""The GPU proof's last step (benchmarks/gpu/summarize.py) over the JSON the real programs write.

run.sh has never run on a GPU, so nothing else would notice if model_check's, model_bench's or
hf_peer's JSON drifted from what the summary reads. Here model_check and model_bench run on the
guarded device (the CPU kernels behind device memory) on a 2-layer model from make_models.py,
hf_peer's document is written in its format, and the summary must carry their figures, compute
the tessera / transformers ratio from them and give the right verdict."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.environ.get("TESSERA_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("TESSERA_BINARY_DIR", os.path.join(ROOT, "build"))
GPU = os.path.join(ROOT, "benchmarks", "gpu")
BIN = os.path.join(BUILD, "benchmarks", "gpu")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd[0]} rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def proof(tmp_path_factory):
    for b in ("model_check", "model_bench"):
        if not os.path.exists(os.path.join(BIN, b)):
            pytest.fail(f"{b} not built in {BIN}")
    d = tmp_path_factory.mktemp("proof")
    models, work = d / "models", d / "work"
    work.mkdir()
    run([sys.executable, os.path.join(GPU, "make_models.py"), "--out", str(models), "--layers", "2",
         "--vocab", "8192", "--only", "smollm2-q4_1"])
    model = str(models / "smollm2-q4_1.gguf")
    run([os.path.join(BIN, "model_check"), "--model", model, "--device", "guarded:0", "--tokens",
         "3", "--logprob-tol", "0", "--json", str(work / "check_smollm2-q4_1.json")])
    # Named as run.sh names the 1B F16 benchmark, so the summary pairs it with the peer.
    run([os.path.join(BIN, "model_bench"), "--model", model, "--device", "guarded:0", "--batches",
         "1,8", "--steps", "2", "--prompt", "4", "--prefill", "8", "--copy-mib", "8", "--json",
         str(work / "bench_llama1b-f16.json")])
    peer = {"model": "hf-llama1b-f16", "dtype": "float16", "attn": "sdpa", "torch": "stand-in",
            "device": "none", "decode": [{"batch": 1, "tok_s": 2.0, "step_ms": 500.0},
                                         {"batch": 8, "tok_s": 4.0, "step_ms": 2000.0}]}
    (work / "hf_peer_f16.json").write_text(json.dumps(peer))
    return work


def summarize(work, rows, status=0):
    (work / "rows.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    out = work / "summary.json"
    p = run([sys.executable, os.path.join(GPU, "summarize.py"), "--rows", str(work / "rows.tsv"),
             "--work", str(work), "--json", str(out), "--elapsed", "7", "--status", str(status)])
    return p.stdout, json.loads(out.read_text())


def test_summary_carries_the_programs_figures(proof):
    text, doc = summarize(proof, [("build", "ok", "6 targets"), ("op_suite", "ok", "passed 40")])
    assert doc["verdict"] == "PASS", text
    check = doc["model_check"]["check_smollm2-q4_1"]
    assert check["pass"] is True and check["prompts"], check
    bench = doc["model_bench"]["bench_llama1b-f16"]
    decode = {r["batch"]: r["tok_s"] for r in bench["decode"]}
    assert set(decode) == {1, 8} and all(v > 0 for v in decode.values()), bench
    assert bench["weight_bytes"] > 0 and bench["copy_gbps"] > 0, bench
    assert bench["prefill"]["tok_s"] > 0, bench
    # The ratio is ours over the peer's, batch by batch, from these very files.
    ratios = doc["tessera_over_transformers"]
    assert ratios["hf_peer_f16_b1"] == pytest.approx(decode[1] / 2.0)
    assert ratios["hf_peer_f16_b8"] == pytest.approx(decode[8] / 4.0)
    # The printed table shows the check and the benchmark rows.
    assert "smollm2-q4_1" in text and "llama1b-f16" in text and "GPU proof: PASS" in text


def test_a_failed_or_missing_step_fails_the_proof(proof):
    _, doc = summarize(proof, [("build", "ok", ""), ("op_suite", "FAIL", "zero tests passed"),
                               ("make_models", "MISSING", "no gguf")])
    assert doc["verdict"] == "FAIL: op_suite, make_models"
    _, doc = summarize(proof, [("build", "ok", "")], status=1)
    assert doc["verdict"].startswith("FAIL")
