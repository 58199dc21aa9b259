"""Tiny random Mixture-of-Experts models for the tests, built on tiny_models.TinySpec: Mixtral
(HF `block_sparse_moe.gate` + `experts.E.w1/w2/w3`; GGUF llama with `llama.expert_count`, router
`ffn_gate_inp` and stacked `ffn_{gate,up,down}_exps` experts, some of them Q8_0/Q4_0) and
Qwen2-MoE (HF `mlp.gate`, `mlp.experts.E.*_proj`, `mlp.shared_expert.*` with its sigmoid
`mlp.shared_expert_gate`, `norm_topk_prob`; GGUF qwen2moe with `ffn_*_shexp`) and Qwen3-MoE
(Qwen2-MoE's expert names without a shared expert, qwen3 attention with per-head q/k RMSNorm;
GGUF qwen3moe). The reference forward is float64 numpy over the HF
layout, written from the models' published definitions: softmax over all experts, the top k,
renormalised when the config says so (Mixtral always), each chosen expert's SwiGLU weighted and
summed, plus sigmoid(gate . x) times the shared expert."""

import numpy as np
import gguf

from tiny_models import TinySpec


class MoeSpec(TinySpec):
    def __init__(self, style="mixtral", experts=4, top_k=2, moe_ffn=32, shared_ffn=48,
                 norm_topk=None, seed=0, **kw):
        arch = {"mixtral": "llama", "qwen2_moe": "qwen2", "qwen3_moe": "qwen3",
                "olmoe": "olmoe"}[style]
        super().__init__(arch=arch, seed=seed, **kw)
        self.style, self.experts, self.top_k, self.moe_ffn = style, experts, top_k, moe_ffn
        self.shared_ffn = shared_ffn if style == "qwen2_moe" else 0
        self.norm_topk = True if style == "mixtral" else bool(norm_topk)
        self.ffn = moe_ffn  # feed_forward_length in GGUF: the experts' width
        self.quant = {}  # GGUF tensor name -> GGMLQuantizationType for write_gguf
        rng = np.random.default_rng(seed + 1000)
        w = lambda *s: (rng.standard_normal(s) * 0.15).astype(np.float32)
        H, F = self.hidden, moe_ffn
        for l in range(self.layers):
            p = f"model.layers.{l}."
            for n in ("gate_proj", "up_proj", "down_proj"):
                del self.w[p + f"mlp.{n}.weight"]
            if style == "mixtral":
                # Router weights scaled up so the top-k choice is clear of float32 rounding.
                self.w[p + "block_sparse_moe.gate.weight"] = w(experts, H) * 4
                for e in range(experts):
                    x = p + f"block_sparse_moe.experts.{e}."
                    self.w[x + "w1.weight"], self.w[x + "w3.weight"] = w(F, H), w(F, H)
                    self.w[x + "w2.weight"] = w(H, F)
            else:
                self.w[p + "mlp.gate.weight"] = w(experts, H) * 4
                for e in range(experts):
                    x = p + f"mlp.experts.{e}."
                    self.w[x + "gate_proj.weight"], self.w[x + "up_proj.weight"] = w(F, H), w(F, H)
                    self.w[x + "down_proj.weight"] = w(H, F)
                S = self.shared_ffn
                if not S:
                    continue
                self.w[p + "mlp.shared_expert.gate_proj.weight"] = w(S, H)
                self.w[p + "mlp.shared_expert.up_proj.weight"] = w(S, H)
                self.w[p + "mlp.shared_expert.down_proj.weight"] = w(H, S)
                self.w[p + "mlp.shared_expert_gate.weight"] = w(1, H)

    def config_json(self):
        c = super().config_json()
        c["model_type"] = self.style
        if self.style == "mixtral":
            c.update(num_local_experts=self.experts, num_experts_per_tok=self.top_k,
                     intermediate_size=self.moe_ffn)
        else:
            c.update(num_experts=self.experts, num_experts_per_tok=self.top_k,
                     moe_intermediate_size=self.moe_ffn,
                     norm_topk_prob=self.norm_topk, decoder_sparse_step=1, mlp_only_layers=[])
            if self.style == "qwen2_moe":
                c["shared_expert_intermediate_size"] = self.shared_ffn
        return c

    # --- GGUF (llama.cpp's layouts: llama with experts for Mixtral, qwen2moe) -------------------
    def hf_expert(self, g):
        """HF name part of the gate/up/down expert projection."""
        if self.style == "mixtral":
            return {"gate": "w1", "up": "w3", "down": "w2"}[g]
        return g + "_proj"

    def stacked(self, l, hf):
        x = "block_sparse_moe.experts" if self.style == "mixtral" else "mlp.experts"
        return np.stack([self.w[f"model.layers.{l}.{x}.{e}.{hf}.weight"]
                         for e in range(self.experts)])

    def write_gguf(self, path, tokenizer_json):
        if self.style in ("mixtral", "olmoe"):  # olmoe: its own name, NeoX pairs (no permutation)
            return super().write_gguf(path, tokenizer_json)
        dense = self.arch
        self.arch = dense + "moe"  # the writer's architecture; no Q/K permutation, as for qwen2
        try:
            return super().write_gguf(path, tokenizer_json)
        finally:
            self.arch = dense

    def gguf_extra(self, wr):
        wr.add_expert_count(self.experts)
        wr.add_expert_used_count(self.top_k)
        if self.style == "qwen2_moe":
            wr.add_expert_feed_forward_length(self.moe_ffn)
            wr.add_expert_shared_feed_forward_length(self.shared_ffn)
            if self.norm_topk:  # absent (as llama.cpp writes qwen2moe): no renormalisation
                wr.add_expert_weights_norm(True)
        if self.style == "qwen3_moe":
            wr.add_expert_feed_forward_length(self.moe_ffn)
            if not self.norm_topk:  # absent: renormalised, as llama.cpp runs qwen3moe
                wr.add_expert_weights_norm(False)
        if self.style == "olmoe" and self.norm_topk:  # absent: not renormalised (llama.cpp)
            wr.add_expert_weights_norm(True)
        for l in range(self.layers):
            p = f"model.layers.{l}."
            router = "block_sparse_moe.gate" if self.style == "mixtral" else "mlp.gate"
            wr.add_tensor(f"blk.{l}.ffn_gate_inp.weight", self.w[p + router + ".weight"])
            if self.style == "qwen2_moe":
                wr.add_tensor(f"blk.{l}.ffn_gate_inp_shexp.weight",
                              self.w[p + "mlp.shared_expert_gate.weight"].reshape(-1))
                for g in ("gate", "up", "down"):
                    wr.add_tensor(f"blk.{l}.ffn_{g}_shexp.weight",
                                  self.w[p + f"mlp.shared_expert.{g}_proj.weight"])
            for g in ("gate", "up", "down"):
                hf = self.hf_expert(g)
                name = f"blk.{l}.ffn_{g}_exps.weight"
                a = self.stacked(l, hf)
                if name in self.quant:
                    wr.add_tensor(name, gguf.quants.quantize(a, self.quant[name]),
                                  raw_dtype=self.quant[name])
                else:
                    wr.add_tensor(name, a)

    def gguf_weights(self):
        """The weights as the GGUF file holds them (quantized experts rounded), in HF layout."""
        W = dict(self.w)
        x = "block_sparse_moe.experts" if self.style == "mixtral" else "mlp.experts"
        for name, qt in self.quant.items():
            l, g = int(name.split(".")[1]), name.split(".")[2][4:-5]
            hf = self.hf_expert(g)
            a = gguf.quants.dequantize(gguf.quants.quantize(self.stacked(l, hf), qt), qt)
            for e in range(self.experts):
                W[f"model.layers.{l}.{x}.{e}.{hf}.weight"] = a[e]
        return W

    # --- reference ----------------------------------------------------------------------------
    def mlp(self, W, p, h):
        silu = lambda g: g / (1 + np.exp(-g))
        if self.style == "mixtral":
            router, x = W[p + "block_sparse_moe.gate.weight"], p + "block_sparse_moe.experts.{}."
            names = ("w1", "w3", "w2")
        else:
            router, x = W[p + "mlp.gate.weight"], p + "mlp.experts.{}."
            names = ("gate_proj", "up_proj", "down_proj")
        logits = h @ router.T
        prob = np.exp(logits - logits.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        out = np.zeros_like(h)
        for t in range(h.shape[0]):
            top = np.argsort(-prob[t], kind="stable")[: self.top_k]
            wts = prob[t, top] / (prob[t, top].sum() if self.norm_topk else 1.0)
            for e, wt in zip(top, wts):
                g, u, d = (W[x.format(e) + n + ".weight"] for n in names)
                out[t] += wt * (silu(h[t] @ g.T) * (h[t] @ u.T)) @ d.T
        if self.shared_ffn:
            s = p + "mlp.shared_expert."
            shared = (silu(h @ W[s + "gate_proj.weight"].T) * (h @ W[s + "up_proj.weight"].T)) \
                @ W[s + "down_proj.weight"].T
            out += 1 / (1 + np.exp(-(h @ W[p + "mlp.shared_expert_gate.weight"].T))) * shared
        return out
