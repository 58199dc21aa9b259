"""Tiny Mixture-of-Experts models written by the test (tiny_moe.py) against the float64 numpy
reference forward: a Mixtral-style HF directory and GGUF file (one expert tensor Q8_0, one Q4_0;
the reference uses the same rounded values; also on the guarded device), a Qwen2-MoE HF directory with a shared expert (with
and without norm_topk_prob), `tessera generate` giving the reference's greedy tokens, and the
Qwen3-MoE (per-head q/k RMSNorm, head_dim apart from hidden / heads, no shared expert, HF and
GGUF), and the clear refusals (tensor parallelism for an MoE model).

Tolerance: 2e-4 absolute on log-probabilities (1e-4 on logits as in test_tiny_models.py, doubled
for the log-sum-exp): F32 arithmetic over 2 layers of width 64 gives ~1e-6; a wrong expert, a
missing renormalisation or shared-expert gate shifts them by ~1e-2 or more. The router weights
are scaled so that no top-k choice is within float32 rounding of a tie. Tessera runs the exact
path (--activations fp32): int8 activations round far beyond these bounds by design."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tiny_moe import MoeSpec  # noqa: E402
from test_tiny_models import BIN, tessera_logits  # noqa: E402

ATOL = 2e-4


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def make(tmp_path, style, **kw):
    """Writes the HF directory (and for Mixtral the GGUF file); returns the spec."""
    seed = int(np.random.SeedSequence().entropy % 2**31)
    hf = tmp_path / "hf"
    spec = MoeSpec(style=style, seed=seed, **kw)
    spec.write_hf(str(hf))  # first pass: learn the tokenizer's vocabulary size
    tok = json.load(open(hf / "tokenizer.json"))
    spec = MoeSpec(style=style, vocab=len(tok["model"]["vocab"]), seed=seed, **kw)
    spec.write_hf(str(hf))
    spec.tok_json = tok
    return spec


def check(model, spec, ids, weights=None):
    ref = log_softmax(spec.logits(ids, weights))
    got = log_softmax(tessera_logits(model, ids))
    err = np.abs(got - ref).max()
    assert err < ATOL, f"max |logprob diff| {err}"
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def check_hf_and_gguf(tmp_path, spec, n, q8_tensor):
    """check() on n random ids through the HF directory, then through the same model written as
    GGUF with `q8_tensor` stored Q8_0 (the reference on its rounded values); returns the ids."""
    ids = list(np.random.default_rng().integers(0, spec.vocab, size=n))
    check(str(tmp_path / "hf"), spec, ids)
    spec.quant = {q8_tensor: gguf.GGMLQuantizationType.Q8_0}
    spec.write_gguf(str(tmp_path / "moe.gguf"), spec.tok_json)
    check(str(tmp_path / "moe.gguf"), spec, ids, spec.gguf_weights())
    return ids


def greedy_reference(spec, prompt, n, weights=None):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(spec.logits(ids, weights)[-1].argmax()))
    return ids[len(prompt):]


def generate(model, prompt, n):
    out = subprocess.run([BIN, "generate", "--model", model, "--prompt-ids", ",".join(map(str, prompt)),
                          "--max-tokens", str(n), "--temperature", "0", "--ignore-eos", "--json",
                          "--activations", "fp32"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token_ids"]


def guarded_logits(model, ids):
    """Logits on the guarded device (the GPU's stand-in: every op under HostAccess)."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        out = subprocess.run([BIN, "logits", "--backend", "guarded", "--model", model,
                              "--ids", ",".join(map(str, ids)), "--out", f.name,
                              "--activations", "fp32"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return np.fromfile(f.name, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


def test_mixtral_hf_and_quantized_gguf_match_reference(tmp_path):
    spec = make(tmp_path, "mixtral")
    spec.quant = {"blk.0.ffn_down_exps.weight": gguf.GGMLQuantizationType.Q8_0,
                  "blk.1.ffn_gate_exps.weight": gguf.GGMLQuantizationType.Q4_0}
    spec.write_gguf(str(tmp_path / "moe.gguf"), spec.tok_json)
    # The file really holds quantized stacked experts.
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "moe.gguf")).tensors}
    assert types["blk.0.ffn_down_exps.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.1.ffn_gate_exps.weight"] == gguf.GGMLQuantizationType.Q4_0
    ids = list(np.random.default_rng().integers(0, spec.vocab, size=30))
    check(str(tmp_path / "hf"), spec, ids)
    check(str(tmp_path / "moe.gguf"), spec, ids, spec.gguf_weights())
    # The guarded device (the GPU's stand-in: MoE ops under HostAccess) gives the same logits.
    guarded = guarded_logits(str(tmp_path / "moe.gguf"), ids)
    assert np.abs(log_softmax(guarded) - log_softmax(spec.logits(ids, spec.gguf_weights()))).max() < ATOL
    prompt = ids[:5]
    assert generate(str(tmp_path / "moe.gguf"), prompt, 6) == \
        greedy_reference(spec, prompt, 6, spec.gguf_weights())


@pytest.mark.parametrize("norm_topk", [False, True])
def test_qwen2_moe_shared_expert_matches_reference(tmp_path, norm_topk):
    spec = make(tmp_path, "qwen2_moe", norm_topk=norm_topk, experts=6, top_k=2)
    # The same model as GGUF qwen2moe (llama.cpp's layout) too, one expert tensor Q8_0.
    ids = check_hf_and_gguf(tmp_path, spec, 30, "blk.1.ffn_up_exps.weight")
    prompt = ids[:4]
    assert generate(str(tmp_path / "hf"), prompt, 6) == greedy_reference(spec, prompt, 6)


@pytest.mark.parametrize("norm_topk", [True, False])
def test_qwen3_moe_matches_reference(tmp_path, norm_topk):
    # head_dim 32 apart from hidden / heads (64 / 4), as Qwen3 checkpoints have it.
    spec = make(tmp_path, "qwen3_moe", norm_topk=norm_topk, head_dim=32)
    ids = check_hf_and_gguf(tmp_path, spec, 24, "blk.1.ffn_up_exps.weight")
    prompt = ids[:4]
    assert generate(str(tmp_path / "moe.gguf"), prompt, 6) == \
        greedy_reference(spec, prompt, 6, spec.gguf_weights())
    if not norm_topk:
        return
    # The guarded device (q/k norm weights uploaded, the norm under HostAccess) and TP=2 (each
    # rank normalises its own heads) agree with the reference too.
    guarded = guarded_logits(str(tmp_path / "hf"), ids)
    assert np.abs(log_softmax(guarded) - log_softmax(spec.logits(ids))).max() < ATOL
    out = group_generate(tmp_path, str(tmp_path / "hf"), prompt, 2, 1)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["token_ids"] == greedy_reference(spec, prompt, 6)


def test_olmoe_matches_reference(tmp_path):
    # OLMoE: RMSNorm over each token's whole q (and k) projection, NeoX RoPE, 8 experts top-4
    # without renormalisation.
    spec = make(tmp_path, "olmoe", experts=8, top_k=4)
    assert not spec.norm_topk
    ids = check_hf_and_gguf(tmp_path, spec, 24, "blk.0.ffn_down_exps.weight")
    prompt = ids[:4]
    want = greedy_reference(spec, prompt, 6)
    guarded = guarded_logits(str(tmp_path / "hf"), ids)
    assert np.abs(log_softmax(guarded) - log_softmax(spec.logits(ids))).max() < ATOL
    # Expert parallelism keeps attention whole on every rank; TP would split the q/k norm's
    # rows across ranks and is refused by name.
    cfg = tmp_path / "ep2.yaml"
    cfg.write_text("\n".join([f"model: {{path: '{tmp_path / 'hf'}'}}", "backend: cpu",
                              "parallel: {expert: 2}", "scheduler: {kv_cache_mb: 4}",
                              "threads_per_rank: 1"]) + "\n")
    out = subprocess.run([BIN, "generate", "--config", str(cfg), "--prompt-ids",
                          ",".join(map(str, prompt)), "--max-tokens", "6", "--temperature", "0",
                          "--ignore-eos", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["token_ids"] == want
    out = group_generate(tmp_path, str(tmp_path / "hf"), prompt, 2, 1)
    assert out.returncode != 0
    assert "tensor parallelism" in out.stderr and "whole q and k" in out.stderr, out.stderr[-3000:]


def group_generate(tmp_path, model, prompt, tensor, pipeline):
    cfg = tmp_path / f"t{tensor}p{pipeline}.yaml"
    cfg.write_text("\n".join([f"model: {{path: '{model}'}}", "backend: cpu",
                              f"parallel: {{tensor: {tensor}, pipeline: {pipeline}}}",
                              "scheduler: {kv_cache_mb: 4}", "threads_per_rank: 1"]) + "\n")
    return subprocess.run([BIN, "generate", "--config", str(cfg), "--prompt-ids",
                           ",".join(map(str, prompt)), "--max-tokens", "6", "--temperature", "0",
                           "--ignore-eos", "--json"], capture_output=True, text=True, timeout=300)


def test_pipeline_stages_and_tensor_parallel_serve_moe(tmp_path):
    spec = make(tmp_path, "qwen2_moe", norm_topk=True, layers=4)
    model = str(tmp_path / "hf")
    prompt = list(np.random.default_rng().integers(0, spec.vocab, size=5))
    want = greedy_reference(spec, prompt, 6)
    for tensor, pipeline in [(1, 2), (2, 1)]:
        out = group_generate(tmp_path, model, prompt, tensor, pipeline)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout.strip().splitlines()[-1])["token_ids"] == want
    # TP=3 divides neither the 4 heads nor the widths of the experts (32) and shared expert (48).
    out = group_generate(tmp_path, model, prompt, 3, 1)
    assert out.returncode != 0
    assert "does not divide" in out.stderr, out.stderr[-3000:]


def expert_counts(url):
    """{(layer, expert): tokens} from /metrics."""
    import re
    import requests
    counts = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        m = re.match(r'tessera:expert_tokens_total\{(.*)\} ([0-9.e+]+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[(int(labels["layer"]), int(labels["expert"]))] = float(m.group(2))
    return counts


def test_metrics_count_tokens_per_expert(tmp_path):
    import requests
    from serve_util import launch
    spec = make(tmp_path, "mixtral", experts=4, top_k=2)
    proc, url, _ = launch(["--model", str(tmp_path / "hf"), "--http-port", "0"])
    try:
        before = expert_counts(url)
        r = requests.post(url + "/v1/completions", json={
            "model": str(tmp_path / "hf"), "prompt": "the lazy dog jumps 0123 over quick brown", "max_tokens": 5,
            "temperature": 0}, timeout=60).json()
        assert "usage" in r, r
        after = expert_counts(url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    fed_min = r["usage"]["prompt_tokens"]
    fed_max = fed_min + r["usage"]["completion_tokens"]
    for layer in range(spec.layers):
        delta = [after.get((layer, e), 0) - before.get((layer, e), 0) for e in range(spec.experts)]
        assert all(d >= 0 for d in delta)
        # Every fed token picks top_k experts of each layer.
        assert spec.top_k * fed_min <= sum(delta) <= spec.top_k * fed_max, (layer, delta, r["usage"])
    assert all(0 <= l < spec.layers and 0 <= e < spec.experts for l, e in after)
