"""`tessera plan` on bare config.json files: the JSON schema, figures worked by hand from the
published Llama-2-70B config, the 405B recommendation across two nodes, the table, and errors."""

import json
import os
import subprocess

import pytest

BIN = os.environ.get("TESSERA_BIN", "build/tessera")

LLAMA2_70B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
    "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80,
    "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
}
LLAMA31_405B = {
    "model_type": "llama", "hidden_size": 16384, "intermediate_size": 53248,
    "num_attention_heads": 128, "num_hidden_layers": 126, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
}
LAYOUT_KEYS = {"tensor", "pipeline", "weight_bytes_per_gpu", "kv_bytes_per_gpu",
               "activation_bytes_per_gpu", "total_bytes_per_gpu", "comm_bytes_per_token",
               "comm_tp_bytes_per_token", "comm_pp_bytes_per_token", "kv_tokens", "fits"}


def run(*args, ok=True):
    out = subprocess.run([BIN, "plan", *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def llama70b(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA2_70B))
    return str(path)


def test_json_schema_and_hand_figures(llama70b):
    plan = json.loads(run("--model", llama70b, "--gpus", "8", "--json").stdout)
    assert set(plan) >= {"layouts", "recommended", "rejected", "model"}
    pairs = sorted((l["tensor"], l["pipeline"]) for l in plan["layouts"])
    assert pairs == [(1, 8), (2, 4), (4, 2), (8, 1)]
    for layout in plan["layouts"]:
        assert LAYOUT_KEYS <= set(layout)
        assert isinstance(layout["fits"], bool)
        assert layout["total_bytes_per_gpu"] == (layout["weight_bytes_per_gpu"]
                                                 + layout["kv_bytes_per_gpu"]
                                                 + layout["activation_bytes_per_gpu"])
        assert layout["comm_bytes_per_token"] == (layout["comm_tp_bytes_per_token"]
                                                  + layout["comm_pp_bytes_per_token"])
    t8 = next(l for l in plan["layouts"] if l["tensor"] == 8)
    # By hand, per GPU per layer: (q + o)/8 = 2*8192*8192/8 = 16,777,216; one KV head of k and v
    # = 2*8192*128 = 2,097,152; MLP 3*8192*28672/8 = 88,080,384; norms 2*8192 = 16,384; x80 layers
    # = 8,557,690,880; + embedding/8 and LM head/8 = 2*32000*8192/8 = 65,536,000; + final norm
    # 8,192 = 8,623,235,072 params * 2 bytes (bf16).
    assert t8["weight_bytes_per_gpu"] == 17_246_470_144
    # KV at context 4096, batch 1: 2 * 80 layers * 1 KV head * 128 * 2 bytes * 4096.
    assert t8["kv_bytes_per_gpu"] == 167_772_160
    # 161 ring all-reduces of 16,384 bytes over 8 GPUs (2*7*2048 each) + logits 7*4000*4.
    assert t8["comm_bytes_per_token"] == 161 * 28_672 + 112_000
    rec = plan["recommended"]
    assert (rec["tensor"], rec["pipeline"], rec["fits"]) == (8, 1, True)
    assert "no pipeline bubbles" in rec["reason"]


def test_405b_on_two_nodes(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA31_405B))
    plan = json.loads(run("--model", str(path), "--gpus", "16", "--json").stdout)
    rec = plan["recommended"]
    assert (rec["tensor"], rec["pipeline"], rec["fits"]) == (8, 2, True)
    assert [(r["tensor"], r["pipeline"]) for r in plan["rejected"]] == [(16, 1)]
    # 8-bit KV halves the KV cache of the same layout: 2*63*1*128*4096 bytes.
    plan8 = json.loads(run("--model", str(path), "--gpus", "16", "--kv-dtype", "fp8",
                           "--json").stdout)
    assert plan8["recommended"]["kv_bytes_per_gpu"] == 2 * 63 * 128 * 4096


def test_table_and_nothing_fits(llama70b):
    out = run("--model", llama70b, "--gpus", "2", "--gpu-memory", "40").stdout
    assert "weights/GPU" in out and "comm/token" in out
    assert "no layout fits" in out and "over the 36.00 GB usable" in out
    out = run("--model", llama70b, "--gpus", "4", "--context", "2048", "--batch", "4").stdout
    assert "recommended: TP=4 PP=1" in out


def test_time_model(llama70b):
    """--interconnect-gbps adds decode/prefill times (the textbook case of docs/operators.md)."""
    plan = json.loads(run("--model", llama70b, "--gpus", "4", "--interconnect-gbps", "800",
                          "--json").stdout)
    assert plan["params"]["time_model"]["interconnect_gbps"] == 800
    by = {(l["tensor"], l["pipeline"]): l["time_ms"] for l in plan["layouts"]}
    assert abs(by[(4, 1)]["decode"] - 15.3189) < 1e-3
    assert abs(by[(2, 2)]["decode"] - 22.5131) < 1e-3
    assert by[(4, 1)]["decode_overlapped"] <= by[(4, 1)]["decode"]
    out = run("--model", llama70b, "--gpus", "4", "--interconnect-gbps", "800").stdout
    assert "decode ms" in out and "15.319" in out
    # Without the flag nothing about time is printed or emitted.
    plain = json.loads(run("--model", llama70b, "--gpus", "4", "--json").stdout)
    assert "time_ms" not in plain["layouts"][0] and "time_model" not in plain["params"]
    bad = run("--model", llama70b, "--gpus", "4", "--interconnect-gbps", "-1", ok=False)
    assert bad.returncode == 2 and "--interconnect-gbps" in bad.stderr


def test_bad_arguments(llama70b, tmp_path):
    assert run("--model", llama70b, ok=False).returncode == 2  # --gpus missing: a usage error
    bad = run("--model", llama70b, "--gpus", "8", "--dtype", "int3", ok=False)
    assert bad.returncode == 2 and "int3" in bad.stderr and "--dtype" in bad.stderr
    missing = run("--model", str(tmp_path / "nope.json"), "--gpus", "2", ok=False)
    assert missing.returncode == 1 and "nope.json" in missing.stderr


MIXTRAL_8X7B = {
    "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
}


def test_moe_expert_parallel_layouts(tmp_path):
    """Mixtral-8x7B on 8 GPUs: the EP rows, the figures worked by hand in the README."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MIXTRAL_8X7B))
    plan = json.loads(run("--model", str(path), "--gpus", "8", "--json").stdout)
    assert plan["model"]["num_experts"] == 8
    ep = [l for l in plan["layouts"] if l["expert"] == 8]
    assert len(ep) == 1 and ep[0]["tensor"] == 1 and ep[0]["pipeline"] == 1
    assert ep[0]["weight_bytes_per_gpu"] == 2 * 7_242_780_672
    # All-to-all (data-parallel attention): 1.75 other ranks per token per layer, 16,400 bytes.
    assert ep[0]["comm_ep_bytes_per_token"] == ep[0]["a2a_bytes_per_token"] == 32 * 7 * 16400 // 4
    assert ep[0]["ep_allreduce_bytes_per_token"] == 32 * 2 * 7 * 1024
    rep = json.loads(run("--model", str(path), "--gpus", "8", "--json", "--expert-attention",
                         "replicated").stdout)
    rep_ep = [l for l in rep["layouts"] if l["expert"] == 8][0]
    assert rep_ep["comm_ep_bytes_per_token"] == 32 * 2 * 7 * 1024
    assert plan["recommended"]["expert"] == 8
    assert plan["rejected"] == []  # EP x TP layouts are allowed too
    assert any(l["expert"] == 4 and l["tensor"] == 2 for l in plan["layouts"])
    table = run("--model", str(path), "--gpus", "8").stdout
    assert "  TP   EP   PP" in table and "recommended: TP=1 EP=8 PP=1" in table
