#!/usr/bin/env python3
"""Random models of real shapes for the GPU proof (benchmarks/gpu/run.sh), written on the GPU
machine itself from a fixed seed (the real files are too large to carry): GGUF through the `gguf`
package (carried by benchmarks/gpu/pack.sh), vectorised numpy quantization (gguf.quants), and
Hugging Face safetensors + config.json for the transformers peer (hf_peer.py).

Shapes:
  smollm2   SmolLM2-135M (the default model): hidden 576, 30 layers, 9/3 heads, ffn 1536,
            vocab 49152, tied embeddings -- Q4_1, F16, BF16, for model_check
  qwen2     Qwen2-0.5B: hidden 896, 24 layers, 14/2 heads, ffn 4864, vocab 151936, tied, q/k/v
            biases -- F16, for model_check
  llama1b   Llama-3.2-1B: hidden 2048, 16 layers, 32/8 heads, ffn 8192, vocab 128256, tied --
            Q4_0, Q8_0, F16, for model_bench; hf-llama1b-f16/-bf16 safetensors for hf_peer
  llama8b   Llama-3.1-8B: hidden 4096, 32 layers, 32/8 heads, ffn 14336, vocab 128256 --
            Q4_0, Q8_0, F16, for model_bench
  mixtral   a small Mixtral-style MoE: hidden 512, 8 layers, 8/2 heads, 8 experts of width 1024,
            top-2, vocab 32000, tied; stacked ffn_*_exps experts, F32 router (ffn_gate_inp) --
            Q4_0, for model_check (the MoE ops on the device)

The model_check shapes get every layer and row drawn independently. The benchmark shapes are
built cheaply (an 8B model is 8e9 draws and a numpy quantization pass too slow for the GPU
machine's minutes): --unique-layers distinct layers (default 2) cycled over the depth, and the
embedding table tiled from 8192 distinct rows. Every layer is still its own tensor in the file and
on the device, so the bytes a decode step reads are the real model's; only the values repeat,
which a benchmark does not see (the L2 cache holds far less than one layer). GGUF q/k rows are
permuted as llama.cpp's converter does, so a GGUF file and the safetensors of one shape hold the
same model (CI checks tessera gives both the same logits).

Scale: matrices are N(0, 1/in) (o_proj and down_proj x 2, so that the layers, not the
input token's own embedding, decide the tied LM head's choice), norms 1 + N(0, 0.1^2), embeddings
N(0, 0.1^2): activations stay O(1) through the residual stream and logits have std ~2, so greedy
choices have real margins to compare.
"""

import argparse
import json
import os
import struct
import sys
import time
import zlib

import numpy as np

SHAPES = {
    "smollm2": dict(arch="llama", hidden=576, layers=30, heads=9, kv=3, ffn=1536, vocab=49152,
                    tied=True, theta=100000.0, eps=1e-5, ctx=8192),
    "qwen2": dict(arch="qwen2", hidden=896, layers=24, heads=14, kv=2, ffn=4864, vocab=151936,
                  tied=True, theta=1000000.0, eps=1e-6, ctx=32768),
    "llama1b": dict(arch="llama", hidden=2048, layers=16, heads=32, kv=8, ffn=8192, vocab=128256,
                    tied=True, theta=500000.0, eps=1e-5, ctx=131072),
    "llama8b": dict(arch="llama", hidden=4096, layers=32, heads=32, kv=8, ffn=14336, vocab=128256,
                    tied=False, theta=500000.0, eps=1e-5, ctx=131072),
    # Mixtral-style MoE (benchmarks/run_moe_compare.sh's shape): 8 experts of width ffn, top-2.
    "mixtral": dict(arch="llama", hidden=512, layers=8, heads=8, kv=2, ffn=1024, vocab=32000,
                    tied=True, theta=1000000.0, eps=1e-5, ctx=4096, experts=8, top_k=2),
}
# name -> (shape, dtype, cheap construction)
MODELS = {
    "smollm2-q4_1": ("smollm2", "Q4_1", False),
    "smollm2-f16": ("smollm2", "F16", False),
    "smollm2-bf16": ("smollm2", "BF16", False),
    "qwen2-f16": ("qwen2", "F16", False),
    "llama1b-q4_0": ("llama1b", "Q4_0", True),
    "llama1b-q8_0": ("llama1b", "Q8_0", True),
    "llama1b-f16": ("llama1b", "F16", True),
    "llama8b-q4_0": ("llama8b", "Q4_0", True),
    "llama8b-q8_0": ("llama8b", "Q8_0", True),
    "llama8b-f16": ("llama8b", "F16", True),
    "mixtral-q4_0": ("mixtral", "Q4_0", False),
    "hf-smollm2-f16": ("smollm2", "HF-F16", False),
    "hf-llama1b-f16": ("llama1b", "HF-F16", True),
    "hf-llama1b-bf16": ("llama1b", "HF-BF16", True),
}
UNIQUE_ROWS = 8192


class Weights:
    """The HF-named float32 weights of one shape, drawn lazily and cached, so that every file
    written from one Weights (GGUF dtypes, safetensors) holds the same values."""

    def __init__(self, s, seed, cheap, unique_layers):
        self.s, self.seed, self.cheap = s, seed, cheap
        self.unique = min(unique_layers, s["layers"]) if cheap else s["layers"]
        self.cache = {}

    def _draw(self, key, shape, std, mean=0.0):
        if key not in self.cache:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= np.float32(std)
            if mean:
                a += np.float32(mean)
            self.cache[key] = a
        return self.cache[key]

    def embed(self):
        s = self.s
        if not self.cheap:
            return self._draw("embed", (s["vocab"], s["hidden"]), 0.1)
        rows = self._draw("embed", (UNIQUE_ROWS, s["hidden"]), 0.1)
        return rows, s["vocab"]  # tiled on write

    def lm_head(self):
        s = self.s
        return self._draw("lm_head", (UNIQUE_ROWS, s["hidden"]), 0.1), s["vocab"]

    def norm(self, key):
        return self._draw(key, (self.s["hidden"],), 0.1, 1.0)

    def layer(self, l):
        """(HF suffix, array) of layer l, cycling over the unique layers."""
        s, u = self.s, l % self.unique
        h, hd = s["hidden"], s["hidden"] // s["heads"]
        q, kv, f = s["heads"] * hd, s["kv"] * hd, s["ffn"]
        d = lambda n, shape, std: self._draw(f"{u}.{n}", shape, std)
        out = [("input_layernorm.weight", self._draw(f"{u}.in_norm", (h,), 0.1, 1.0)),
               ("post_attention_layernorm.weight", self._draw(f"{u}.post_norm", (h,), 0.1, 1.0)),
               ("self_attn.q_proj.weight", d("q", (q, h), h ** -0.5)),
               ("self_attn.k_proj.weight", d("k", (kv, h), h ** -0.5)),
               ("self_attn.v_proj.weight", d("v", (kv, h), h ** -0.5)),
               ("self_attn.o_proj.weight", d("o", (h, q), 2.0 * q ** -0.5))]
        if s.get("experts"):  # stacked experts as GGUF holds them; the router kept F32
            E = s["experts"]
            out += [("moe.router", d("router", (E, h), 4.0 * h ** -0.5)),
                    ("moe.gate_exps", d("gate", (E, f, h), h ** -0.5)),
                    ("moe.up_exps", d("up", (E, f, h), h ** -0.5)),
                    ("moe.down_exps", d("down", (E, h, f), 2.0 * f ** -0.5))]
        else:
            out += [("mlp.gate_proj.weight", d("gate", (f, h), h ** -0.5)),
                    ("mlp.up_proj.weight", d("up", (f, h), h ** -0.5)),
                    ("mlp.down_proj.weight", d("down", (h, f), 2.0 * f ** -0.5))]
        if s["arch"] == "qwen2":
            out += [("self_attn.q_proj.bias", d("bq", (q,), 0.1)),
                    ("self_attn.k_proj.bias", d("bk", (kv,), 0.1)),
                    ("self_attn.v_proj.bias", d("bv", (kv,), 0.1))]
        return out


GGUF_SUB = {"input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
            "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
for _x in "qkv":
    GGUF_SUB[f"self_attn.{_x}_proj.weight"] = f"attn_{_x}.weight"
    GGUF_SUB[f"self_attn.{_x}_proj.bias"] = f"attn_{_x}.bias"
GGUF_SUB.update({"moe.router": "ffn_gate_inp.weight", "moe.gate_exps": "ffn_gate_exps.weight",
                 "moe.up_exps": "ffn_up_exps.weight", "moe.down_exps": "ffn_down_exps.weight"})


def encode(gguf, a, dtype, memo):
    """(array, raw_dtype) of a in dtype; 1-D tensors (norms, biases) stay F32 as in real files.
    Memoised by identity, so a repeated layer is quantized once and its bytes shared."""
    key = (id(a), dtype)
    if key in memo:
        return memo[key]
    if a.ndim == 1 or dtype == "F32":
        r = (a, None)
    elif dtype == "F16":
        r = (a.astype(np.float16), None)
    else:
        qt = getattr(gguf.GGMLQuantizationType, dtype)
        r = (gguf.quants.quantize(a, qt), qt)
    memo[key] = r
    return r


def tiled(enc, vocab):
    """The encoded rows repeated to `vocab` rows (quantization is per row, so tiling the bytes
    equals quantizing the tiled floats)."""
    arr, qt = enc
    reps = -(-vocab // arr.shape[0])
    return np.tile(arr, (reps, 1))[:vocab], qt


def write_gguf(path, s, w, dtype):
    import gguf
    arch = s["arch"]
    wr = gguf.GGUFWriter(path, arch)
    wr.add_block_count(s["layers"])
    wr.add_context_length(s["ctx"])
    wr.add_embedding_length(s["hidden"])
    wr.add_feed_forward_length(s["ffn"])
    wr.add_head_count(s["heads"])
    wr.add_head_count_kv(s["kv"])
    wr.add_layer_norm_rms_eps(s["eps"])
    wr.add_rope_freq_base(s["theta"])
    wr.add_vocab_size(s["vocab"])
    if s.get("experts"):
        wr.add_expert_count(s["experts"])
        wr.add_expert_used_count(s["top_k"])
    memo = {}
    add = lambda name, enc: wr.add_tensor(name, enc[0], raw_dtype=enc[1]) if enc[1] is not None \
        else wr.add_tensor(name, enc[0])
    e = w.embed()
    add("token_embd.weight", tiled(encode(gguf, e[0], dtype, memo), e[1]) if w.cheap
        else encode(gguf, e, dtype, memo))
    add("output_norm.weight", encode(gguf, w.norm("norm"), dtype, memo))
    if not s["tied"]:
        head, vocab = w.lm_head()
        add("output.weight", tiled(encode(gguf, head, dtype, memo), vocab))
    permuted = {}  # id -> (source, permuted): each distinct q/k matrix permuted once

    def permute(a, n_head):  # llama.cpp's converter: rotation pairs become adjacent rows
        if id(a) not in permuted:
            p = a.reshape(n_head, 2, a.shape[0] // n_head // 2, *a.shape[1:]).swapaxes(1, 2)
            permuted[id(a)] = (a, np.ascontiguousarray(p.reshape(a.shape)))
        return permuted[id(a)][1]

    for l in range(s["layers"]):
        for suffix, a in w.layer(l):
            if arch == "llama" and suffix.startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
                a = permute(a, s["heads"] if ".q_proj." in suffix else s["kv"])
            add(f"blk.{l}.{GGUF_SUB[suffix]}",
                encode(gguf, a, "F32" if suffix == "moe.router" else dtype, memo))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def bf16_bits(a):
    b = a.astype(np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")


def write_hf(directory, s, w, dtype):
    """config.json + model.safetensors (F16 or BF16), streamed tensor by tensor."""
    os.makedirs(directory, exist_ok=True)
    st = "F16" if dtype == "HF-F16" else "BF16"
    conv = (lambda a: a.astype("<f2")) if st == "F16" else bf16_bits
    tensors = []  # (name, shape, array source, tile rows)
    e = w.embed()
    tensors.append(("model.embed_tokens.weight", e[0], e[1]) if w.cheap
                   else ("model.embed_tokens.weight", e, e.shape[0]))
    tensors.append(("model.norm.weight", w.norm("norm"), None))
    if not s["tied"]:
        head, vocab = w.lm_head()
        tensors.append(("lm_head.weight", head, vocab))
    for l in range(s["layers"]):
        for suffix, a in w.layer(l):
            tensors.append((f"model.layers.{l}.{suffix}", a, None))
    header, off, shapes = {}, 0, []
    for name, a, rows in tensors:
        shape = [rows, a.shape[1]] if rows is not None else list(a.shape)
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    memo = {}
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, a, rows in tensors:
            if id(a) not in memo:
                memo[id(a)] = conv(a)
            b = memo[id(a)]
            if rows is not None and rows != b.shape[0]:
                b = np.tile(b, (-(-rows // b.shape[0]), 1))[:rows]
            f.write(np.ascontiguousarray(b).tobytes())
    cfg = {"architectures": ["Qwen2ForCausalLM" if s["arch"] == "qwen2" else "LlamaForCausalLM"],
           "model_type": s["arch"], "hidden_size": s["hidden"], "num_hidden_layers": s["layers"],
           "num_attention_heads": s["heads"], "num_key_value_heads": s["kv"],
           "intermediate_size": s["ffn"], "vocab_size": s["vocab"], "rms_norm_eps": s["eps"],
           "rope_theta": s["theta"], "max_position_embeddings": s["ctx"],
           "tie_word_embeddings": s["tied"], "hidden_act": "silu",
           "torch_dtype": "float16" if st == "F16" else "bfloat16",
           "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the files")
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), help="models to write (default all)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--unique-layers", type=int, default=2,
                    help="distinct layers of the benchmark shapes (cycled over the depth)")
    ap.add_argument("--skip-existing", action="store_true",
                    help="leave a model already written (a rerun on a warm machine)")
    ap.add_argument("--layers", type=int, help="cut every shape to this many layers (CI)")
    ap.add_argument("--vocab", type=int, help="cut every shape's vocabulary (CI)")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    weights = {}  # (shape, cheap) -> Weights: one set of values per shape across its files
    for name in a.only or list(MODELS):
        shape, dtype, cheap = MODELS[name]
        s = dict(SHAPES[shape])
        if a.layers:
            s["layers"] = min(s["layers"], a.layers)
        if a.vocab:
            s["vocab"] = min(s["vocab"], a.vocab)
        w = weights.setdefault((shape, cheap), Weights(s, a.seed, cheap, a.unique_layers))
        done = os.path.join(a.out, name, "config.json") if dtype.startswith("HF-") else \
            os.path.join(a.out, name + ".gguf")
        if a.skip_existing and os.path.exists(done):
            print(f"make_models: {name}: exists, kept", flush=True)
            continue
        t0 = time.perf_counter()
        if dtype.startswith("HF-"):
            path = os.path.join(a.out, name)
            write_hf(path, s, w, dtype)
            size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
        else:
            path = os.path.join(a.out, name + ".gguf")
            tmp = path + ".tmp"
            write_gguf(tmp, s, w, dtype)
            os.replace(tmp, path)  # a reader (a parallel test) never sees half a file
            size = os.path.getsize(path)
        print(f"make_models: {name}: {size / 1e9:.3f} GB in {time.perf_counter() - t0:.1f} s -> {path}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
