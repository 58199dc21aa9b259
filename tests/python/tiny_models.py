"""Writers for tiny random llama-family models, in both file formats, and an independent numpy
forward pass over Hugging Face-layout weights. Used by test_tiny_models.py."""

import json
import os
import struct

import numpy as np
import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

CORPUS = ["hello world, the quick brown fox jumps over the lazy dog 0123456789"] * 20


def make_tokenizer(directory):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False,
                   "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"}, f)
    return json.load(open(os.path.join(directory, "tokenizer.json")))


class TinySpec:
    def __init__(self, arch="llama", vocab=300, hidden=64, layers=2, heads=4, kv_heads=2,
                 ffn=96, theta=10000.0, tied=False, llama3=None, seed=0, head_dim=None, ctx=256):
        self.arch, self.vocab, self.hidden, self.layers = arch, vocab, hidden, layers
        self.heads, self.kv_heads, self.ffn, self.theta = heads, kv_heads, ffn, theta
        self.head_dim = head_dim or hidden // heads  # qwen3 sets it apart from hidden / heads
        self.tied, self.llama3, self.ctx = tied, llama3, ctx
        rng = np.random.default_rng(seed)
        w = lambda *s: (rng.standard_normal(s) * 0.15).astype(np.float32)
        self.w = {"model.embed_tokens.weight": w(vocab, hidden),
                  "model.norm.weight": (1 + w(hidden)).astype(np.float32)}
        if not tied:
            self.w["lm_head.weight"] = w(vocab, hidden)
        hd = self.head_dim
        for l in range(layers):
            p = f"model.layers.{l}."
            self.w[p + "input_layernorm.weight"] = (1 + w(hidden)).astype(np.float32)
            self.w[p + "post_attention_layernorm.weight"] = (1 + w(hidden)).astype(np.float32)
            self.w[p + "self_attn.q_proj.weight"] = w(heads * hd, hidden)
            self.w[p + "self_attn.k_proj.weight"] = w(kv_heads * hd, hidden)
            self.w[p + "self_attn.v_proj.weight"] = w(kv_heads * hd, hidden)
            self.w[p + "self_attn.o_proj.weight"] = w(hidden, heads * hd)
            if arch == "qwen3":  # per-head RMSNorm of q and k, no biases
                self.w[p + "self_attn.q_norm.weight"] = (1 + w(hd)).astype(np.float32)
                self.w[p + "self_attn.k_norm.weight"] = (1 + w(hd)).astype(np.float32)
            if arch == "olmoe":  # RMSNorm over each token's whole q and k
                self.w[p + "self_attn.q_norm.weight"] = (1 + w(heads * hd)).astype(np.float32)
                self.w[p + "self_attn.k_norm.weight"] = (1 + w(kv_heads * hd)).astype(np.float32)
            if arch == "qwen2":
                self.w[p + "self_attn.q_proj.bias"] = w(heads * hd)
                self.w[p + "self_attn.k_proj.bias"] = w(kv_heads * hd)
                self.w[p + "self_attn.v_proj.bias"] = w(kv_heads * hd)
            self.w[p + "mlp.gate_proj.weight"] = w(ffn, hidden)
            self.w[p + "mlp.up_proj.weight"] = w(ffn, hidden)
            self.w[p + "mlp.down_proj.weight"] = w(hidden, ffn)

    # --- rope -------------------------------------------------------------------------------
    def inv_freq(self):
        hd = self.head_dim
        inv = 1.0 / self.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        if self.llama3:
            f, lo, hi, old = (self.llama3[k] for k in ("factor", "low_freq_factor",
                                                       "high_freq_factor",
                                                       "original_max_position_embeddings"))
            wavelen = 2 * np.pi / inv
            smooth = (old / wavelen - lo) / (hi - lo)
            scaled = np.where(wavelen > old / lo, inv / f, inv)
            mid = ~(wavelen < old / hi) & ~(wavelen > old / lo)
            scaled = np.where(mid, (1 - smooth) * inv / f + smooth * inv, scaled)
            return scaled
        return inv

    # --- writers ----------------------------------------------------------------------------
    def config_json(self):
        c = {"model_type": self.arch, "vocab_size": self.vocab, "hidden_size": self.hidden,
             "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
             "num_key_value_heads": self.kv_heads, "intermediate_size": self.ffn,
             "max_position_embeddings": self.ctx, "rms_norm_eps": 1e-5, "rope_theta": self.theta,
             "tie_word_embeddings": self.tied, "head_dim": self.head_dim}
        if self.llama3:
            c["rope_scaling"] = dict(self.llama3, rope_type="llama3")
        return c

    def write_hf(self, directory, dtype="F32", shards=1):
        os.makedirs(directory, exist_ok=True)
        make_tokenizer(directory)
        json.dump(self.config_json(), open(os.path.join(directory, "config.json"), "w"))
        names = sorted(self.w)
        if shards == 1:
            write_safetensors(os.path.join(directory, "model.safetensors"),
                              {n: self.w[n] for n in names}, dtype)
            return
        weight_map = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: self.w[n] for n in names[s::shards]}
            write_safetensors(os.path.join(directory, fname), part, dtype)
            weight_map.update({n: fname for n in part})
        json.dump({"metadata": {}, "weight_map": weight_map},
                  open(os.path.join(directory, "model.safetensors.index.json"), "w"))

    def write_gguf(self, path, tokenizer_json, quant=None):
        """quant(gguf_name, w) may return (raw bytes array, GGMLQuantizationType) to store a
        tensor quantized, or None to keep it float32."""
        arch = self.arch
        wr = gguf.GGUFWriter(path, arch)
        wr.add_name("tiny")
        wr.add_block_count(self.layers)
        wr.add_context_length(self.ctx)
        wr.add_embedding_length(self.hidden)
        wr.add_feed_forward_length(self.ffn)
        wr.add_head_count(self.heads)
        wr.add_head_count_kv(self.kv_heads)
        wr.add_layer_norm_rms_eps(1e-5)
        wr.add_rope_freq_base(self.theta)
        wr.add_rope_dimension_count(self.head_dim)
        wr.add_key_length(self.head_dim)
        wr.add_value_length(self.head_dim)
        vocab = tokenizer_json["model"]["vocab"]
        tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("gpt2")
        wr.add_token_list(tokens)
        wr.add_token_types([3 if t in ("<s>", "</s>") else 1 for t in tokens])
        wr.add_token_merges(merges)
        wr.add_bos_token_id(vocab["<s>"])
        wr.add_eos_token_id(vocab["</s>"])
        hd = self.head_dim

        def permute(w, n_head):  # llama.cpp's converter: rotation pairs become adjacent rows
            return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

        gg = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
        sub = {"input_layernorm.weight": "attn_norm.weight",
               "post_attention_layernorm.weight": "ffn_norm.weight",
               "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
               "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
        for x in "qkv":
            sub[f"self_attn.{x}_proj.weight"] = f"attn_{x}.weight"
            sub[f"self_attn.{x}_proj.bias"] = f"attn_{x}.bias"
        sub["self_attn.q_norm.weight"], sub["self_attn.k_norm.weight"] = "attn_q_norm.weight", "attn_k_norm.weight"
        for name, w in self.w.items():
            if name in gg:
                gname = gg[name]
            else:
                l, rest = name.split(".")[2], ".".join(name.split(".")[3:])
                if rest not in sub:
                    continue  # a subclass's weights (gguf_tensors)
                gname = f"blk.{l}.{sub[rest]}"
            if arch == "llama" and (".attn_q." in gname or ".attn_k." in gname):
                w = permute(w, self.heads if ".attn_q." in gname else self.kv_heads)
            q = quant(gname, w) if quant else None
            if q is None:
                wr.add_tensor(gname, w)
            else:
                wr.add_tensor(gname, q[0], raw_dtype=q[1])
        self.gguf_extra(wr)
        if self.llama3:
            base = 1.0 / self.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
            wr.add_tensor("rope_freqs.weight", (base / self.inv_freq()).astype(np.float32))
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()

    def gguf_extra(self, wr):
        """Hook: more metadata and tensors (MoE models)."""

    # --- reference --------------------------------------------------------------------------
    def logits(self, ids, weights=None):
        """Float64 forward over HF-layout weights with rotate-half RoPE."""
        W = {k: v.astype(np.float64) for k, v in (weights or self.w).items()}
        T, hd, H, KV = len(ids), self.head_dim, self.heads, self.kv_heads
        rms = lambda x, w: x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5) * w
        ang = np.arange(T)[:, None] * self.inv_freq()[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(x, n):
            x = x.reshape(T, n, hd)
            a, b = x[..., : hd // 2], x[..., hd // 2:]
            c, s = cos[:, None, :], sin[:, None, :]
            return np.concatenate([a * c - b * s, b * c + a * s], -1)

        x = W["model.embed_tokens.weight"][np.asarray(ids)]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.layers):
            p = f"model.layers.{l}."
            h = rms(x, W[p + "input_layernorm.weight"])
            proj = lambda n: h @ W[p + f"self_attn.{n}_proj.weight"].T + W.get(p + f"self_attn.{n}_proj.bias", 0)
            q, k = proj("q").reshape(T, H, hd), proj("k").reshape(T, KV, hd)
            if self.arch == "olmoe":  # the whole projection normalised, then split into heads
                q = rms(proj("q"), W[p + "self_attn.q_norm.weight"]).reshape(T, H, hd)
                k = rms(proj("k"), W[p + "self_attn.k_norm.weight"]).reshape(T, KV, hd)
            elif p + "self_attn.q_norm.weight" in W:  # qwen3: each head normalised before RoPE
                q, k = rms(q, W[p + "self_attn.q_norm.weight"]), rms(k, W[p + "self_attn.k_norm.weight"])
            q, k, v = rope(q, H), rope(k, KV), proj("v").reshape(T, KV, hd)
            out = np.empty((T, H, hd))
            for hh in range(H):
                kv = hh // (H // KV)
                s = q[:, hh] @ k[:, kv].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(-1, keepdims=True))
                out[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, kv]
            x = x + out.reshape(T, -1) @ W[p + "self_attn.o_proj.weight"].T
            x = x + self.mlp(W, p, rms(x, W[p + "post_attention_layernorm.weight"]))
        head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
        return rms(x, W["model.norm.weight"]) @ head.T

    def mlp(self, W, p, h):
        """The dense SwiGLU MLP of layer prefix p (MoE models override this)."""
        g = h @ W[p + "mlp.gate_proj.weight"].T
        return (g / (1 + np.exp(-g)) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T


def to_bf16_bits(a):
    b = a.astype(np.float32).view(np.uint32)
    b = b + 0x7FFF + ((b >> 16) & 1)
    return (b >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:
            raw = to_bf16_bits(a).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
