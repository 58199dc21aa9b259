#!/usr/bin/env python3
"""Accuracy of the CPU activation modes against the float64 numpy reference
(tests/python/reference_llama.py): teacher-forced top-1 agreement and logit error over real
English text (this repository's README.md and docs/architecture.md, markup stripped), in windows
of --window tokens, for `tessera logits --activations fp32` (exact) and `--activations int8`, and, where llama.cpp has
been built (benchmarks/peer/build_llama_cpp.sh), for llama.cpp itself on the same ids: its
peer_logits program feeds each window to libllama as one batch from position 0 with every
position's logits requested, llama.cpp's default settings (f16 KV cache), as a prompt is run.
Not a test: a measurement, printed as a table (and --json). Usage:
  benchmarks/int8_accuracy.py [--bin build/tessera] [--model GGUF] [--positions 1024]
                              [--peer-logits ~/.cache/tessera-peer/bin/peer_logits | none]
Needs the venv with numpy + gguf (/work/main/.venv or .venv)."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
from reference_llama import ReferenceLlama  # noqa: E402

DEFAULT_MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_PEER = os.path.expanduser("~/.cache/tessera-peer/bin/peer_logits")


def english_text():
    """Prose paragraphs of the docs: code blocks, tables and headings dropped, links unwrapped."""
    out = []
    for name in ("README.md", "docs/architecture.md"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "|", "<", "-", "*")) or len(line) < 40:
                continue
            line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line).replace("`", "")
            out.append(line)
    return "\n".join(out)


def run(bin_, *args):
    r = subprocess.run([bin_, *args], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"{bin_} {' '.join(args[:1])} failed: {r.stderr}")
    return r.stdout


def tessera_logits(bin_, model, ids, activations, threads, kv="f32", chunk=0):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        run(bin_, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", f.name,
            "--activations", activations, "--threads", str(threads), "--kv-cache-dtype", kv,
            *(["--chunk", str(chunk)] if chunk else []))
        return np.fromfile(f.name, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


def peer_logits(bin_, model, ids, threads, repack=True):
    """llama.cpp's logits for the same ids (benchmarks/peer/peer_logits.cpp)."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        run(bin_, "--model", model, "--ids", ",".join(map(str, ids)), "--out", f.name,
            "--threads", str(threads), *([] if repack else ["--repack", "0"]))
        return np.fromfile(f.name, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tessera"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--positions", type=int, default=1024, help="teacher-forced positions, at least")
    ap.add_argument("--window", type=int, default=256, help="tokens per forward pass")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--peer-logits", default=DEFAULT_PEER,
                    help="llama.cpp's peer_logits (skipped if absent; 'none' to skip)")
    ap.add_argument("--kv-cache-dtype", default="f32", choices=("f32", "f16", "bf16"),
                    help="Tessera's KV cache element type")
    ap.add_argument("--chunk", type=int, default=0,
                    help="Tessera's tokens per prefill step (1: every position reads its context "
                         "back from the cache, as decode does; 0: a window per step)")
    ap.add_argument("--peer-no-repack", dest="peer_repack", action="store_false",
                    help="llama.cpp without its repacked / AMX weight buffers (its AMX matmul "
                         "crashes on batches on some AMX machines, build 11434)")
    a = ap.parse_args()

    ids = json.loads(run(a.bin, "tokenize", "--model", a.model, "--json", english_text()))["ids"]
    windows = [ids[i:i + a.window] for i in range(0, len(ids), a.window)]
    windows = [w for w in windows if len(w) == a.window][: -(-a.positions // a.window)]
    n = sum(len(w) for w in windows)
    if n < a.positions:
        sys.exit(f"only {n} positions of text (need {a.positions})")
    ref = ReferenceLlama(a.model)
    modes = ("fp32", "int8")
    if a.peer_logits != "none" and os.access(a.peer_logits, os.X_OK):
        modes += ("llama.cpp",)
    stats = {m: {"agree": 0, "max_abs": 0.0, "sum_abs": 0.0, "sum_ref_nll": 0.0, "sum_nll": 0.0}
             for m in modes}
    for w in windows:
        theirs = ref.logits(w)
        tgt = np.array(w[1:])  # next-token targets for the negative log-likelihood
        for m in modes:
            ours = (peer_logits(a.peer_logits, a.model, w, a.threads, a.peer_repack)
                    if m == "llama.cpp"
                    else tessera_logits(a.bin, a.model, w, m, a.threads, a.kv_cache_dtype,
                                        a.chunk))
            s = stats[m]
            hit = ours.argmax(-1) == theirs.argmax(-1)
            s["agree"] += int(hit.sum())
            s.setdefault("hits", []).extend(hit.tolist())
            d = np.abs(ours - theirs)
            s["max_abs"] = max(s["max_abs"], float(d.max()))
            s["sum_abs"] += float(d.mean(-1).sum())
            for lg, key in ((ours, "sum_nll"), (theirs, "sum_ref_nll")):
                z = lg[:-1] - lg[:-1].max(-1, keepdims=True)
                lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
                s[key] += float(-lp[np.arange(len(tgt)), tgt].sum())
    result = {"model": os.path.basename(a.model), "positions": n, "windows": len(windows),
              "window": a.window, "kv_cache_dtype": a.kv_cache_dtype, "chunk": a.chunk,
              "modes": {}}
    print(f"{os.path.basename(a.model)}: {n} teacher-forced positions ({len(windows)} x {a.window}); "
          f"Tessera KV cache {a.kv_cache_dtype}, {a.chunk or a.window} tokens per step")
    print(f"{'engine/mode':<12}{'top-1 agree':>16}{'max|dlogit|':>13}{'mean|dlogit|':>14}"
          f"{'ppl':>9}{'ref ppl':>9}")
    for m in modes:
        s = stats[m]
        npred = n - len(windows)
        r = {"top1_agree": s["agree"] / n, "agree": s["agree"], "max_abs_logit_diff": s["max_abs"],
             "mean_abs_logit_diff": s["sum_abs"] / n, "ppl": float(np.exp(s["sum_nll"] / npred)),
             "ref_ppl": float(np.exp(s["sum_ref_nll"] / npred))}
        result["modes"][m] = r
        print(f"{m:<12}{s['agree']:>8}/{n:<5} {r['top1_agree']:6.2%}{r['max_abs_logit_diff']:>9.3f}"
              f"{r['mean_abs_logit_diff']:>14.4f}{r['ppl']:>9.3f}{r['ref_ppl']:>9.3f}")
    if "llama.cpp" in modes:
        # Paired view of the same positions: where exactly one of the two matches the reference
        # (the discordant pairs a McNemar test weighs); the rest agree or miss together.
        peer = np.array(stats["llama.cpp"]["hits"])
        for m in ("fp32", "int8"):
            mine = np.array(stats[m]["hits"])
            only_m, only_p = int((mine & ~peer).sum()), int((~mine & peer).sum())
            result["modes"][m]["vs_llama_cpp"] = {"only_this": only_m, "only_llama_cpp": only_p}
            print(f"{m} vs llama.cpp: right where llama.cpp is wrong {only_m}, wrong where "
                  f"llama.cpp is right {only_p}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
