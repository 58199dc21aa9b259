"""Tiny random llama-family models written both as a Hugging Face directory (safetensors,
rotate-half RoPE) and as GGUF (Q/K rows permuted as llama.cpp's converter does, adjacent-pair
RoPE): Tessera must give the same logits for both, and those of an independent float64 numpy
forward. Covers llama, qwen2 (QKV bias, NeoX RoPE in GGUF too), GQA, tied and separate output
embeddings, Llama-3 rope scaling (config.json rope_scaling vs GGUF rope_freqs.weight), F16/BF16
weights and sharded safetensors, and the error for an unsupported architecture.

Tolerance: weights are F32 (or exactly representable F16/BF16 values, the reference uses the
same rounded numbers), 2 layers of width 64: float32 rounding in Tessera gives ~1e-6 relative;
1e-4 absolute on logits of magnitude ~1-5 leaves a wide margin yet catches any wrong RoPE pairing,
a missing bias or a transposed weight, which shift logits by ~0.1 or more."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import TinySpec, from_bf16_bits, to_bf16_bits  # noqa: E402

BIN = os.environ.get("TESSERA_BIN", "build/tessera")
ATOL = 1e-4


def tessera_logits(model, ids):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        out = subprocess.run([BIN, "logits", "--model", model, "--ids", ",".join(map(str, ids)),
                              "--out", f.name, "--chunk", "3", "--activations", "fp32"],
                             capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return np.fromfile(f.name, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


@pytest.mark.parametrize("arch,tied,llama3", [
    ("llama", False, None),
    ("llama", True, None),
    ("qwen2", False, None),
    ("qwen3", True, None),
    ("llama", False, {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 32}),
])
def test_hf_and_gguf_match_reference(tmp_path, arch, tied, llama3):
    hd = 32 if arch == "qwen3" else None  # qwen3: head_dim apart from hidden / heads (64 / 4)
    spec = TinySpec(arch=arch, tied=tied, llama3=llama3, head_dim=hd,
                    seed=np.random.SeedSequence().entropy % 2**32)
    hf = tmp_path / "hf"
    spec.write_hf(str(hf))
    tok_json = json.load(open(hf / "tokenizer.json"))
    spec.vocab = len(tok_json["model"]["vocab"])
    spec = TinySpec(arch=arch, vocab=spec.vocab, tied=tied, llama3=llama3, head_dim=hd, seed=1)
    spec.write_hf(str(hf))
    spec.write_gguf(str(tmp_path / "tiny.gguf"), tok_json)
    ids = list(np.random.default_rng().integers(0, spec.vocab, size=40))
    ref = spec.logits(ids)
    from_hf = tessera_logits(str(hf), ids)
    from_gguf = tessera_logits(str(tmp_path / "tiny.gguf"), ids)
    assert np.abs(from_hf - ref).max() < ATOL
    assert np.abs(from_gguf - ref).max() < ATOL


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_and_sharded_safetensors(tmp_path, dtype):
    spec = TinySpec(vocab=300, seed=3)
    spec.write_hf(str(tmp_path), dtype=dtype, shards=3)
    spec.vocab = len(json.load(open(tmp_path / "tokenizer.json"))["model"]["vocab"])
    spec = TinySpec(vocab=spec.vocab, seed=3)
    spec.write_hf(str(tmp_path), dtype=dtype, shards=3)
    rounded = {k: (v.astype(np.float16).astype(np.float32) if dtype == "F16"
                   else from_bf16_bits(to_bf16_bits(v))) for k, v in spec.w.items()}
    ids = list(range(1, 30))
    assert np.abs(tessera_logits(str(tmp_path), ids) - spec.logits(ids, rounded)).max() < ATOL


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    spec = TinySpec(vocab=300)
    spec.write_hf(str(tmp_path))
    cfg = json.load(open(tmp_path / "config.json"))
    cfg["model_type"] = "gpt_neox"
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    out = subprocess.run([BIN, "logits", "--model", str(tmp_path), "--ids", "1", "--out", "/dev/null"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "gpt_neox" in out.stderr and "not supported" in out.stderr
