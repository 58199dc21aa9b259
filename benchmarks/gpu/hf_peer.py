#!/usr/bin/env python3
"""The peer for the GPU proof's decode figures (benchmarks/gpu/run.sh): the same 1B-shape weights
that model_bench decodes (make_models.py's hf-llama1b-f16 / -bf16, safetensors + config.json),
decoded greedily by Hugging Face transformers on PyTorch: eager execution (no torch.compile),
static KV cache, batch 1 and 8, on cuda:0.

Decode tok/s counts only decode steps: the run with --tokens new tokens minus the run with 1 new
token (the prefill and the first step), over tokens - 1 steps, times the batch; each the best of
--reps runs after a warm-up. Prompts are --prompt fixed token ids per sequence (no tokenizer).
Prints a table and writes JSON (--json)."""

import argparse
import json
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a Hugging Face model directory")
    ap.add_argument("--dtype", choices=["float16", "bfloat16"], default="bfloat16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per sequence")
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens per sequence")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (eager, sdpa)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.tokens < 2 or a.prompt < 1 or a.reps < 1:
        ap.error("--tokens must be >= 2, --prompt and --reps >= 1")
    batches = [int(b) for b in a.batches.split(",")]

    import torch
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        print("hf_peer: no CUDA device", file=sys.stderr)
        return 2
    dtype = getattr(torch, a.dtype)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype,
                                                 attn_implementation=a.attn).to("cuda:0").eval()
    vocab = model.config.vocab_size

    def timed(ids, new):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                 min_new_tokens=new, do_sample=False, cache_implementation="static",
                                 pad_token_id=0)
        torch.cuda.synchronize()
        assert out.shape[1] == ids.shape[1] + new, out.shape
        return time.perf_counter() - t0

    rows = []
    print(f"hf_peer: {a.model} {a.dtype} attn={a.attn} torch {torch.__version__} on "
          f"{torch.cuda.get_device_name(0)}")
    print(f"{'batch':<6} {'decode tok/s':<14} {'step ms':<10}")
    for b in batches:
        ids = (torch.arange(b * a.prompt, device="cuda:0").reshape(b, a.prompt) * 7919 + 3) % vocab
        timed(ids, a.tokens)  # warm-up: cache allocation, kernels
        t_full = min(timed(ids, a.tokens) for _ in range(a.reps))
        t_one = min(timed(ids, 1) for _ in range(a.reps))
        step = max(t_full - t_one, 1e-9) / (a.tokens - 1)
        rows.append({"batch": b, "tok_s": b / step, "step_ms": step * 1e3})
        print(f"{b:<6} {b / step:<14.1f} {step * 1e3:<10.3f}")
    result = {"model": a.model, "dtype": a.dtype, "attn": a.attn, "torch": torch.__version__,
              "device": torch.cuda.get_device_name(0), "decode": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
