"""Overlapped tensor parallelism (`tp_overlap: true`: each step cut in two micro-batches, one half's
all-reduces in flight while the other computes) and sequence parallelism (`sequence_parallel:
true`: each rank keeps its rows of the residual, reduce-scatter + all-gather in place of each
all-reduce) each give bitwise the same tokens and logprobs as neither, at TP=2 with real processes over Gloo (TCP) and over shared memory, on a generated
dense model (8 heads, 2 KV heads): an 8-token prefill (cut inside the sequence) through `generate`,
and six prompts in one request through `serve` (decode steps of six sequences, cut between them).
One request, not six concurrent ones: the batches must be the same in both runs, and concurrent
arrivals would batch differently from run to run (a different step size may take another matmul
path, overlap or not)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import BIN, launch  # noqa: E402
from tiny_models import TinySpec  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_overlap")
    seed = int(np.random.SeedSequence().entropy % 2**32)
    spec = TinySpec(heads=8, kv_heads=2, hidden=64, layers=4, ffn=128, seed=seed)
    spec.write_hf(str(d / "hf"))
    tok = json.load(open(d / "hf" / "tokenizer.json"))
    spec = TinySpec(vocab=len(tok["model"]["vocab"]), heads=8, kv_heads=2, hidden=64, layers=4,
                    ffn=128, seed=seed)
    spec.write_gguf(str(d / "tiny.gguf"), tok)
    prompt = [int(x) for x in np.random.default_rng(seed).integers(0, spec.vocab - 2, size=8)]
    return d, str(d / "tiny.gguf"), prompt, seed


def config(d, model, overlap, extra=()):
    cfg = d / f"tp2_{'on' if overlap else 'off'}{'_'.join(('',) + tuple(extra)).replace(' ', '')}.yaml"
    cfg.write_text("\n".join([f"model: {{path: '{model}'}}", "backend: cpu",
                              "parallel: {tensor: 2}", "scheduler: {kv_cache_mb: 4}",
                              "threads_per_rank: 1", f"tp_overlap: {str(overlap).lower()}",
                              *extra]) + "\n")
    return cfg


def env_for(engine):
    env = dict(os.environ)
    if engine == "gloo":
        env["TESSERA_COMM_SHM"] = "0"  # every rank opts out of shared memory: Gloo over TCP
    return env


# What each mode sets on top of the plain TP=2 topology, and the line its workers log.
MODES = {"overlap": (True, (), "tp_overlap on"),
         "sequence_parallel": (False, ("sequence_parallel: true",), "TP residual sequence-parallel")}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("engine", ["gloo", "shm"])
def test_generate_is_bitwise_the_same_with_overlap(tiny, engine, mode):
    d, model, prompt, seed = tiny
    overlap, extra, logged = MODES[mode]
    out = {}
    for on in (False, True):
        cfg = config(d, model, overlap, extra) if on else config(d, model, False)
        r = subprocess.run([BIN, "generate", "--config", str(cfg),
                            "--prompt-ids", ",".join(map(str, prompt)), "--max-tokens", "10",
                            "--temperature", "0", "--ignore-eos", "--logprobs", "3", "--json"],
                           capture_output=True, text=True, timeout=300, env=env_for(engine))
        assert r.returncode == 0, r.stderr[-3000:]
        assert (logged in r.stderr) == on, r.stderr[-3000:]
        out[on] = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out[True]["logprobs"]) == 10
    # Tokens, their logprobs and the top-3 alternatives, all exactly equal.
    assert out[True]["token_ids"] == out[False]["token_ids"], (seed, out)
    assert out[True]["logprobs"] == out[False]["logprobs"], (seed, out)


def serve_answers(d, model, overlap, engine, prompts, flags=()):
    log = d / f"serve_{engine}_{overlap}_{'_'.join(flags)}.log"
    with open(log, "w") as err:
        proc, url, _ = launch(["--config", str(config(d, model, overlap)), "--http-port", "0",
                               "--no-warmup", *flags], env=env_for(engine), stderr=err)
    try:
        r = requests.post(url + "/v1/completions",
                          json={"model": model, "prompt": prompts, "max_tokens": 12,
                                "temperature": 0, "logprobs": 2, "ignore_eos": True},
                          timeout=300)
        assert r.status_code == 200, r.text
        text = log.read_text()
        assert ("TP residual sequence-parallel" in text) == ("--sequence-parallel" in flags), text
        return sorted(r.json()["choices"], key=lambda c: c["index"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("engine", ["gloo", "shm"])
def test_batched_serving_is_bitwise_the_same_with_overlap(tiny, engine):
    d, model, prompt, seed = tiny
    prompts = [(prompt * 2)[: 3 + i] for i in range(6)]  # 6 sequences decoding together
    off = serve_answers(d, model, False, engine, prompts)
    on = serve_answers(d, model, True, engine, prompts)
    # serve's flag over the file's `sequence_parallel: false`.
    sp = serve_answers(d, model, False, engine, prompts, ["--sequence-parallel", "on"])
    assert len(off) == len(on) == len(sp) == 6
    for i, (a, b, c) in enumerate(zip(off, on, sp)):
        assert a["text"] == b["text"] == c["text"], (seed, i, a, b, c)
        assert a["logprobs"] == b["logprobs"] == c["logprobs"], (seed, i, a, b, c)
