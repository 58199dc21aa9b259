"""Tessera's CPU engine (and the guarded device) against the independent numpy reference
(reference_llama.py) on the default model.

Tolerance: both sides use the very same dequantized weights, so the only differences are float32
rounding in Tessera (the reference is float64): per dot product of length K the relative error is
~sqrt(K)*2^-24 (~1e-6), and 30 residual layers with RMSNorm amplify it by at most a few hundred,
so logits (magnitude ~10-30) should agree to ~1e-3. We allow 2e-2 absolute, still far below the
~0.5 gaps that separate competing tokens, and require >= 99% teacher-forced top-1 agreement.
That is the exact path (--activations fp32). The default int8 path rounds every activation to
1/254 of its 32-block's largest magnitude before each quantized matmul; over 30 layers that moves
logits by ~0.2 on average (benchmarks/int8_accuracy.py: mean |dlogit| 0.18, top-1 95% over 256
positions of prose, perplexity +0.2%). Its bounds here: mean |dlogit| < 0.5 and >= 90% top-1, far
from what a wrong kernel gives (a wrong quant or scale leaves top-1 agreement near zero)."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference_llama import ReferenceLlama  # noqa: E402

MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
BIN = os.environ.get("TESSERA_BIN", "build/tessera")
ATOL = 2e-2
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Once upon a time, in a small village by the sea, there lived",
    "Q: What is 12 + 7?\nA:",
    "<|im_start|>user\nName three colors of the rainbow.<|im_end|>\n<|im_start|>assistant\n",
]

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


@pytest.fixture(scope="module")
def ref():
    return ReferenceLlama(MODEL)


def run(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def tokenize(text):
    return json.loads(run("tokenize", "--model", MODEL, "--json", text))["ids"]


def tessera_logits(ids, chunk=None, backend="cpu", activations="fp32"):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        args = ["logits", "--model", MODEL, "--ids", ",".join(map(str, ids)), "--out", f.name,
                "--backend", backend, "--activations", activations]
        if chunk:
            args += ["--chunk", str(chunk)]
        run(*args)
        data = np.fromfile(f.name, dtype=np.float32)
    return data.reshape(len(ids), -1).astype(np.float64)


# The guarded device (the GPU's stand-in: device memory host code may not touch) runs the same
# forward pass with weights, activations, metadata and KV cache in guarded memory.
@pytest.mark.parametrize("backend", ["cpu", "guarded"])
@pytest.mark.parametrize("activations", ["fp32", "int8"])
def test_logits_match_reference_and_top1_agrees(ref, backend, activations):
    agree = total = 0
    worst = mean = 0.0
    for text in PROMPTS:
        ids = tokenize(text)
        ours, theirs = tessera_logits(ids, backend=backend, activations=activations), ref.logits(ids)
        assert ours.shape == theirs.shape
        worst = max(worst, float(np.abs(ours - theirs).max()))
        mean += float(np.abs(ours - theirs).mean(-1).sum())
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += len(ids)
    mean /= total
    print(f"{activations}: max |logit diff| = {worst:.2e}, mean {mean:.2e}, "
          f"top-1 agreement {agree}/{total}")
    if activations == "fp32":
        assert worst < ATOL
        assert agree / total >= 0.99
    else:
        assert mean < 0.5
        assert agree / total >= 0.90


def test_chunked_prefill_equals_one_shot(ref):
    ids = tokenize(PROMPTS[2])
    whole, chunked = tessera_logits(ids), tessera_logits(ids, chunk=5)
    # The guarded device runs the CPU kernels on the same inputs: bitwise the same logits.
    assert np.array_equal(tessera_logits(ids, chunk=5, backend="guarded"), chunked)
    int8 = tessera_logits(ids, chunk=5, activations="int8")
    assert np.array_equal(tessera_logits(ids, chunk=5, backend="guarded", activations="int8"), int8)
    # Chunks read earlier K/V back from the paged cache; only float32 reassociation differs.
    assert np.abs(whole - chunked).max() < 1e-3


# The exact path's promise: greedy tokens follow the float64 reference wherever the top two logits
# are 0.1 apart. The int8 path moves logits by more than that now and then (see the top), so it is
# held to the statistical bounds of the test above instead.
def test_greedy_continuation_matches_where_margin_is_clear(ref):
    checked = 0
    for text in PROMPTS[:3]:
        ids = tokenize(text)
        out = json.loads(run("generate", "--model", MODEL, "--prompt-ids", ",".join(map(str, ids)),
                             "--max-tokens", "16", "--temperature", "0", "--ignore-eos", "--json",
                             "--activations", "fp32"))
        gen = out["token_ids"]
        assert len(gen) == 16
        theirs = ref.logits(ids + gen)
        for i, tok in enumerate(gen):
            row = theirs[len(ids) - 1 + i]
            top2 = np.sort(row)[-2:]
            if top2[1] - top2[0] < 0.1:  # a near tie: either choice is right, paths may part here
                break
            assert tok == int(row.argmax()), f"step {i} of {text!r}: {tok} vs {int(row.argmax())}"
            checked += 1
    assert checked >= 10
