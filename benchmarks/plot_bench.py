#!/usr/bin/env python3
"""Plots for `tessera bench` results (matplotlib, PNG).

  plot_bench.py run RESULT.json -o latency.png   latency distributions of one run: TTFT, ITL,
                                                  TPOT and E2E histograms with p50/p90/p99 marked
  plot_bench.py sweep SWEEP.json -o curve.png     the throughput-latency curve of a sweep: output
                                                  tokens/s against TTFT, TPOT and E2E (p50, p99),
                                                  each point labelled with its concurrency or rate
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = [("ttft_ms", "Time to first token"), ("itl_ms", "Inter-token latency"),
           ("tpot_ms", "Time per output token"), ("e2e_ms", "End-to-end latency")]


def percentile(values, p):
    """numpy.percentile's linear method, like the C++ client (no numpy needed here)."""
    v = sorted(values)
    if not v:
        return None
    rank = p / 100 * (len(v) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def samples(requests, key):
    out = []
    for r in requests:
        if not r.get("success"):
            continue
        v = r.get(key)
        if isinstance(v, list):
            out.extend(v)
        elif v is not None:
            out.append(v)
    return out


def describe(cfg):
    mode = (f"rate {cfg.get('request_rate')}/s" if cfg.get("mode") == "request_rate"
            else f"concurrency {cfg.get('concurrency')}")
    work = cfg.get("workload", "")
    if "input_len" in cfg:
        work += f" in {cfg['input_len']} / out {cfg['output_len']}"
    return f"{cfg.get('model', '')} — {mode}, {work}".strip()


def plot_run(result, out):
    cfg, summ, reqs = result["config"], result["summary"], result["requests"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (key, title) in zip(axes.flat, METRICS):
        vals = samples(reqs, key)
        ax.set_title(title)
        ax.set_xlabel("ms")
        ax.set_ylabel("count")
        if not vals:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
            continue
        # A few stalls (e.g. a decode step waiting behind a prefill) would squash the histogram:
        # show the bulk and count what lies beyond.
        hi = max(vals)
        p99 = percentile(vals, 99)
        if hi > 2 * p99 > 0:
            hi = 1.5 * p99
            beyond = sum(v > hi for v in vals)
            ax.text(0.98, 0.02, f"{beyond} sample(s) above {hi:.0f} ms (max {max(vals):.0f})",
                    ha="right", va="bottom", transform=ax.transAxes, fontsize=8)
        ax.hist([v for v in vals if v <= hi], bins=min(50, max(10, len(vals) // 4)),
                color="#4C72B0", alpha=0.85)
        for p, style in ((50, "-"), (90, "--"), (99, ":")):
            x = percentile(vals, p)
            ax.axvline(x, color="#C44E52", linestyle=style, linewidth=1.5, label=f"p{p} {x:.1f}")
        mean = sum(vals) / len(vals)
        ax.axvline(mean, color="#55A868", linewidth=1.5, label=f"mean {mean:.1f}")
        ax.legend(fontsize=9)
    fig.suptitle(f"{describe(cfg)}\n{summ['completed']} ok, {summ['failed']} failed; "
                 f"{summ['request_throughput']:.2f} req/s, "
                 f"{summ['output_token_throughput']:.1f} output tok/s, "
                 f"goodput {summ['goodput']:.2f} req/s", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_sweep(sweep, out):
    pts = sweep["points"]
    xs = [p["summary"]["output_token_throughput"] for p in pts]
    labels = [str(p["value"]) for p in pts]
    prefix = "c=" if sweep.get("mode") == "concurrency" else "rate="
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (key, title) in zip(axes, [METRICS[0], METRICS[2], METRICS[3]]):
        for stat, style in (("p50", "o-"), ("p99", "s--")):
            ys = [p["summary"][key][stat] for p in pts]
            ys = [math.nan if y is None else y for y in ys]
            ax.plot(xs, ys, style, label=stat)
            if stat == "p50":
                for x, y, lab in zip(xs, ys, labels):
                    ax.annotate(prefix + lab, (x, y), textcoords="offset points", xytext=(4, 6),
                                fontsize=8)
        ax.set_title(f"{title} vs throughput")
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(f"{title} (ms)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    cfg = dict(sweep.get("config", {}))
    work = cfg.get("workload", "")
    if "input_len" in cfg:
        work += f" in {cfg['input_len']} / out {cfg['output_len']}"
    fig.suptitle(f"{cfg.get('model', '')} — {work}, {cfg.get('num_requests')} requests per point"
                 f" — sweep over {sweep.get('mode', '').replace('_', ' ')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["run", "sweep"])
    ap.add_argument("input")
    ap.add_argument("-o", "--output", help="PNG path (default: the input with .png)")
    a = ap.parse_args(argv)
    with open(a.input) as f:
        data = json.load(f)
    out = a.output or os.path.splitext(a.input)[0] + ".png"
    (plot_run if a.kind == "run" else plot_sweep)(data, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
