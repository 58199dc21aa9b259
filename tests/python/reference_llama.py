"""An independent llama-family forward pass: PyPI `gguf` reads and dequantizes the GGUF file,
numpy computes in float64. It shares no code with Tessera; it follows llama.cpp's semantics for
GGUF llama weights (adjacent-pair RoPE, since the converter permuted Q/K rows)."""

import numpy as np
import gguf


class ReferenceLlama:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.meta = {k: f.contents() for k, f in r.fields.items()
                     if not k.startswith("tokenizer.ggml.")}
        arch = self.meta["general.architecture"]
        assert arch == "llama", arch
        g = lambda k, d=None: self.meta.get(f"{arch}.{k}", d)
        self.n_layer = int(g("block_count"))
        self.n_embd = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.theta = float(g("rope.freq_base", 10000.0))
        self.t = {}
        for t in r.tensors:
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            self.t[t.name] = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim > 1 else w
        self.out = self.t.get("output.weight", self.t["token_embd.weight"])

    def _rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, x, n_heads):
        # x: [T, n_heads*hd]; rotate adjacent pairs (2i, 2i+1) by pos * theta^(-2i/hd)
        T = x.shape[0]
        hd = self.head_dim
        x = x.reshape(T, n_heads, hd // 2, 2)
        inv = self.theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0], x[..., 1]
        out = np.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
        return out.reshape(T, n_heads * hd)

    def logits(self, ids):
        """Logits [len(ids), vocab] of a causal forward over the whole sequence."""
        T, hd = len(ids), self.head_dim
        x = self.t["token_embd.weight"][np.asarray(ids)]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        group = self.n_head // self.n_kv
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self._rms(x, self.t[p + "attn_norm.weight"])
            q = self._rope(h @ self.t[p + "attn_q.weight"].T, self.n_head).reshape(T, self.n_head, hd)
            k = self._rope(h @ self.t[p + "attn_k.weight"].T, self.n_kv).reshape(T, self.n_kv, hd)
            v = (h @ self.t[p + "attn_v.weight"].T).reshape(T, self.n_kv, hd)
            att = np.empty((T, self.n_head, hd))
            for hh in range(self.n_head):
                kv = hh // group
                s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att[:, hh, :] = s @ v[:, kv, :]
            x = x + att.reshape(T, -1) @ self.t[p + "attn_output.weight"].T
            h = self._rms(x, self.t[p + "ffn_norm.weight"])
            gate = h @ self.t[p + "ffn_gate.weight"].T
            up = h @ self.t[p + "ffn_up.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ self.t[p + "ffn_down.weight"].T
        return self._rms(x, self.t["output_norm.weight"]) @ self.out.T
