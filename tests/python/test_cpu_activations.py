"""The CPU activation mode reaches the worker that runs the model, in each way it can be chosen:
generate's --activations flag (in-process worker), a topology's cpu_activations key (worker
processes of a group), the flag winning over the key, and int8 by default. The worker logs the
mode it set (`cpu matmul: MODE activations ..., ISA kernels`); the two modes' logprobs differ
(int8 rounds activations, fp32 does not), so the log line is not the only evidence. An unknown
mode is a usage error. Uses the default model; skipped when it is not downloaded."""

import json
import os
import re
import subprocess

import pytest

from serve_util import BIN, MODEL, generate_json
PROMPT = "1,504,3458,282,4649,314"  # token ids: no tokenizer round trip needed

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


def generate(*extra):
    log, result = generate_json(PROMPT, 2, *extra)
    modes = re.findall(r"cpu matmul: (\w+) activations .*, (\w+) kernels", log)
    assert modes, log[-3000:]
    return {m for m, _ in modes}, result


def first_logprob(result):
    return result["logprobs"][0]["logprob"] if "logprobs" in result else json.dumps(result)


def topology(tmp_path, key):
    cfg = tmp_path / "t.yaml"
    lines = [f"model: {{path: '{MODEL}'}}", "backend: cpu", "scheduler: {kv_cache_mb: 8}",
             "threads_per_rank: 1"] + ([f"cpu_activations: {key}"] if key else [])
    cfg.write_text("\n".join(lines) + "\n")
    return str(cfg)


def test_flag_picks_the_mode_and_int8_is_the_default():
    default, r_default = generate("--model", MODEL)
    int8, r_int8 = generate("--model", MODEL, "--activations", "int8")
    fp32, r_fp32 = generate("--model", MODEL, "--activations", "fp32")
    assert default == {"int8"} and int8 == {"int8"} and fp32 == {"fp32"}
    assert first_logprob(r_default) == first_logprob(r_int8)
    assert first_logprob(r_fp32) != first_logprob(r_int8)


def test_topology_key_reaches_the_group_workers_and_the_flag_wins(tmp_path):
    assert generate("--config", topology(tmp_path, "fp32"))[0] == {"fp32"}
    assert generate("--config", topology(tmp_path, None))[0] == {"int8"}
    assert generate("--config", topology(tmp_path, "fp32"), "--activations", "int8")[0] == {"int8"}


def test_unknown_mode_is_a_usage_error():
    out = subprocess.run([BIN, "generate", "--model", MODEL, "--prompt-ids", PROMPT,
                          "--activations", "int4"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--activations" in out.stderr, out.stderr
