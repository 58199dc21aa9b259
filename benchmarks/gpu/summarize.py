#!/usr/bin/env python3
"""The GPU proof's summary (benchmarks/gpu/run.sh): the steps' table (rows.tsv) and the figures of
model_check, model_bench and hf_peer (their JSON files in --work), printed as one table and
written as one JSON document. Standard library only (runs on the bare GPU machine's python3).

Ratios computed here, all from the same run: batch-1 decode weight bandwidth as a fraction of the
copy's read bandwidth (model_bench's own figure), and tessera's llama1b-f16 decode tok/s over
transformers' at batch 1 and 8 (hf_peer f16, the same weights; bf16 shown beside it)."""

import argparse
import glob
import json
import os
import sys


def load(work, pattern):
    out = {}
    for p in sorted(glob.glob(os.path.join(work, pattern))):
        try:
            with open(p) as f:
                out[os.path.basename(p)[:-5]] = json.load(f)
        except (OSError, ValueError) as e:
            out[os.path.basename(p)[:-5]] = {"error": str(e)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--status", type=int, default=0)
    a = ap.parse_args(argv)

    steps = []
    with open(a.rows) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                steps.append({"step": parts[0], "result": parts[1], "detail": parts[2]})
    checks = load(a.work, "check_*.json")
    benches = load(a.work, "bench_*.json")
    peers = load(a.work, "hf_peer_*.json")

    print(f"{'step':<26} {'result':<14} detail")
    for s in steps:
        print(f"{s['step']:<26} {s['result']:<14} {s['detail']}")

    if checks:
        print(f"\n{'model check (cuda:0 vs cpu)':<28} {'pass':<5} {'equal':>6} {'near-tie':>9} "
              f"{'tok-diff':>9} {'max|dlogprob|':>14}")
        for name, c in checks.items():
            ps = c.get("prompts", [])
            print(f"{name[6:]:<28} {str(c.get('pass')):<5} {sum(p['equal'] for p in ps):>6} "
                  f"{sum(p['near_ties'] for p in ps):>9} {sum(p['token_mismatches'] for p in ps):>9} "
                  f"{max((p['max_logprob_diff'] for p in ps), default=0):>14.3g}")

    ratios = {}
    if benches:
        print(f"\n{'model bench (cuda:0)':<22} {'GB/step':>8} {'copy GB/s':>10} {'b1 tok/s':>9} "
              f"{'b1 of bw':>9} {'b8 tok/s':>9} {'b64 tok/s':>10} {'prefill tok/s':>14} {'TFLOP/s':>8} "
              f"{'b1 no graphs':>12}")
        for name, b in benches.items():
            d = {r["batch"]: r for r in b.get("decode", [])}
            pre = b.get("prefill", {})
            g = lambda batch, k: d.get(batch, {}).get(k, float("nan"))
            eager = {r["batch"]: r["tok_s"] for r in b.get("decode_no_graphs", [])}
            print(f"{name[6:]:<22} {b.get('weight_bytes', 0) / 1e9:>8.3f} {b.get('copy_gbps', 0):>10.0f} "
                  f"{g(1, 'tok_s'):>9.1f} {g(1, 'of_read_bw'):>9.2f} {g(8, 'tok_s'):>9.1f} "
                  f"{g(64, 'tok_s'):>10.1f} {pre.get('tok_s', float('nan')):>14.0f} "
                  f"{pre.get('tflops', float('nan')):>8.2f} {eager.get(1, float('nan')):>12.1f}")
    if peers:
        print(f"\n{'transformers peer':<22} {'batch':>5} {'tok/s':>9} {'tessera f16 tok/s':>18} {'ratio':>6}")
        ours = {r["batch"]: r["tok_s"] for r in benches.get("bench_llama1b-f16", {}).get("decode", [])}
        for name, p in peers.items():
            for r in p.get("decode", []):
                mine = ours.get(r["batch"])
                ratio = mine / r["tok_s"] if mine and r["tok_s"] else None
                ratios[f"{name}_b{r['batch']}"] = ratio
                print(f"{name:<22} {r['batch']:>5} {r['tok_s']:>9.1f} "
                      f"{(f'{mine:.1f}' if mine else '-'):>18} {(f'{ratio:.2f}' if ratio else '-'):>6}")

    failed = [s["step"] for s in steps if s["result"].startswith(("FAIL", "MISSING"))]
    verdict = "PASS" if a.status == 0 and not failed else "FAIL: " + ", ".join(failed or ["status"])
    print(f"\nGPU proof: {verdict} ({a.elapsed} s)")
    doc = {"verdict": verdict, "elapsed_s": a.elapsed, "steps": steps, "model_check": checks,
           "model_bench": benches, "hf_peer": peers, "tessera_over_transformers": ratios}
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
