"""The KV cache's element type reaches the worker that owns the pool, in each way it can be
chosen: generate's --kv-cache-dtype flag (in-process worker), a topology's
scheduler.kv_cache_dtype key (worker processes of a group), the flag winning over the key, f16 by
default (as llama.cpp's server: half the memory of f32 per token). The worker logs its pool (`KV cache (N blocks of 16 tokens, TYPE)`): f16 and bf16 hold
twice the blocks of f32 in the same --kv-cache-mb, and their logprobs (fp32 activations) move a
little (values are rounded as stored) but not far. An unknown type is a usage error. Uses the default model; skipped
when it is not downloaded."""

import os
import re
import subprocess

import pytest

from serve_util import BIN, MODEL, generate_json
PROMPT = "1,504,3458,282,4649,314,28,1134,2484,282,253"  # token ids: no tokenizer round trip

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


def generate(*extra):
    log, result = generate_json(PROMPT, 4, *extra)
    pools = re.findall(r"KV cache \((\d+) blocks of \d+ tokens, (\w+)\)", log)
    assert pools, log[-3000:]
    return pools, result


def logprobs(result):
    return [e["logprob"] for e in result["logprobs"]]


def topology(tmp_path, key):
    cfg = tmp_path / "t.yaml"
    sched = "{kv_cache_mb: 8" + (f", kv_cache_dtype: {key}" if key else "") + "}"
    cfg.write_text("\n".join([f"model: {{path: '{MODEL}'}}", "backend: cpu",
                              f"scheduler: {sched}", "threads_per_rank: 1"]) + "\n")
    return str(cfg)


def test_flag_halves_the_bytes_per_token_and_moves_logprobs_a_little():
    # fp32 activations: the int8 path re-rounds its activations per 32 values, which turns any
    # tiny perturbation into its own noise (~0.2 in a logprob here), hiding the cache's share.
    runs = {t: generate("--model", MODEL, "--kv-cache-mb", "8", "--activations", "fp32",
                        *(["--kv-cache-dtype", t] if t else []))
            for t in (None, "f32", "f16", "bf16")}
    (blocks32, kind32), = runs["f32"][0]
    assert kind32 == "f32" and runs[None][0] == runs["f16"][0]
    for t in ("f16", "bf16"):
        (blocks, kind), = runs[t][0]
        assert kind == t and int(blocks) == 2 * int(blocks32)
    ref = logprobs(runs["f32"][1])
    assert logprobs(runs[None][1]) == logprobs(runs["f16"][1])
    for t, tol in (("f16", 0.01), ("bf16", 0.05)):  # measured: 1e-3, 1e-2
        got = logprobs(runs[t][1])
        assert runs[t][1]["token_ids"] == runs["f32"][1]["token_ids"], t
        assert got != ref, f"{t}: logprobs identical to f32's: the cache type did not reach the pool"
        assert max(abs(a - b) for a, b in zip(got, ref)) < tol, (t, got, ref)


def test_topology_key_reaches_the_group_workers_and_the_flag_wins(tmp_path):
    assert {k for _, k in generate("--config", topology(tmp_path, "bf16"))[0]} == {"bf16"}
    assert {k for _, k in generate("--config", topology(tmp_path, None))[0]} == {"f16"}
    assert {k for _, k in generate("--config", topology(tmp_path, "f32"))[0]} == {"f32"}
    assert {k for _, k in generate("--config", topology(tmp_path, "bf16"),
                                   "--kv-cache-dtype", "f16")[0]} == {"f16"}


def test_unknown_type_is_a_usage_error():
    out = subprocess.run([BIN, "generate", "--model", MODEL, "--prompt-ids", PROMPT,
                          "--kv-cache-dtype", "fp8"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--kv-cache-dtype" in out.stderr, out.stderr
