#!/usr/bin/env python3
"""Serving before/after in one run: two tessera binaries (A = before, B = after) each serve the
default model in turn, rounds interleaved (A, B, A, B, ...) so that machine noise falls on both,
and one `tessera bench sweep` client (B's, unless --client) measures each. Prints a markdown table
of the median over rounds per concurrency (output tok/s, TTFT p50, ITL p50, failures) on stderr
and, with --json, every point as JSON on stdout.

  python3 benchmarks/compare_serving.py --a /tmp/before/build/tessera --b build/tessera
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from serve_util import launch  # noqa: E402


def start(binary, model, log):
    proc, url, _ = launch(["--model", model, "--http-port", "0"], binary=binary, timeout=300,
                          stderr=log)
    return proc, url


def sweep(client, url, args, out_dir, label):
    cmd = [client, "bench", "sweep", "--base-url", url, "--model", args.model, "--tokenizer",
           args.model, "--concurrencies", args.concurrencies, "--num-requests",
           str(args.num_requests), "--warmup", "2", "--input-len", str(args.input_len),
           "--output-len", str(args.output_len), "--seed", "0", "--timeout", "300",
           "--output-dir", out_dir, "--label", label, "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out_dir, f"{label}-sweep.json")) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="the tessera binary before")
    p.add_argument("--b", required=True, help="the tessera binary after")
    p.add_argument("--client", help="the tessera binary whose bench client measures (default: --b)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrencies", default="1,8")
    p.add_argument("--num-requests", type=int, default=12)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--json", action="store_true", help="every point as JSON on stdout")
    args = p.parse_args()
    client = args.client or args.b
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for name, binary in (("A", args.a), ("B", args.b)):
                with open(os.path.join(tmp, f"{name}{rnd}.log"), "w") as log:
                    proc, url = start(binary, args.model, log)
                    try:
                        s = sweep(client, url, args, tmp, f"{name}-{rnd}")
                    finally:
                        proc.terminate()
                        proc.wait(timeout=60)
                for pt in s["points"]:
                    m = pt["summary"]
                    rows.append({"binary": name, "round": rnd, "concurrency": pt["value"],
                                 "output_tok_s": m["output_token_throughput"],
                                 "ttft_p50_ms": m["ttft_ms"]["p50"], "itl_p50_ms": m["itl_ms"]["p50"],
                                 "failed": m["failed"]})
                print(f"round {rnd} {name} done", file=sys.stderr)
    print(f"| concurrency | A out tok/s | B out tok/s | B/A | A TTFT p50 ms | B TTFT p50 ms "
          f"| A ITL p50 ms | B ITL p50 ms | failed A/B |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for c in sorted({r["concurrency"] for r in rows}):
        def med(name, key):
            return statistics.median(r[key] for r in rows if r["binary"] == name and r["concurrency"] == c)

        def tot(name):
            return sum(r["failed"] for r in rows if r["binary"] == name and r["concurrency"] == c)
        a, b = med("A", "output_tok_s"), med("B", "output_tok_s")
        print(f"| {c} | {a:.1f} | {b:.1f} | {b / a:.2f} | {med('A', 'ttft_p50_ms'):.0f} | "
              f"{med('B', 'ttft_p50_ms'):.0f} | {med('A', 'itl_p50_ms'):.1f} | {med('B', 'itl_p50_ms'):.1f} "
              f"| {tot('A')}/{tot('B')} |", file=sys.stderr)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "client": client, "rounds": args.rounds,
                          "points": rows}))


if __name__ == "__main__":
    main()
