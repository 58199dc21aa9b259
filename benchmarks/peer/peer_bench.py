#!/usr/bin/env python3
"""Tessera beside llama.cpp on the same GGUF, the same threads, in one run (issue 16 item 5).

Speed: for each thread count, decode_bench (batch-1 decode, prefill of 128 and 512 tokens, int8
activations: Tessera's default) and llama-bench (tg64, pp128, pp512) run back to back, the pair
repeated --repeats times; machine_bench's memory read bandwidth is measured before and after, and
each decode figure is put beside the roofline it implies (read bandwidth / weight bytes per token).
Serving: `tessera serve` and `llama-server` (as many slots as the highest concurrency) each take
the same `tessera bench` workload at every concurrency, in turn, --repeats times.

Prints markdown tables with ratios (Tessera / llama.cpp); --json prints only JSON on stdout.
Progress goes to stderr. Built llama.cpp comes from benchmarks/peer/build_llama_cpp.sh (`make
bench-peer` runs both). Only the standard library is used.
  benchmarks/peer/peer_bench.py [--model GGUF] [--threads 1,2] [--repeats 2] [--json] ...
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
NAME = "smollm2-135m-instruct"  # the name both servers answer to, and the bench's tokenizer


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_json(cmd, env=None, timeout=1800):
    log("+", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout), r.stderr


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.*)", out).group(1).strip()
    except Exception:  # noqa: BLE001 - a name is only a label
        return "unknown"


def read_bandwidth(build, threads, working_set_bytes=0):
    """GB/s with 1 thread and with `threads` OpenMP threads: the fastest of machine_bench's
    reads, a 512 MiB buffer (DRAM) and one of working_set_bytes (the model's weights: on a
    machine whose last-level cache holds them, that is where decode reads them from), each plain
    and with the packed kernels' software prefetches. Every figure is kept under
    'by_benchmark'."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    mib = -(-working_set_bytes // (1 << 20))
    j, _ = run_json([os.path.join(build, "benchmarks", "machine_bench"),
                     "--benchmark_filter=BM_(MemoryRead|WorkingSetRead)", "--benchmark_format=json"]
                    + ([f"--working-set-mib={mib}"] if mib else []), env=env)
    out = {}
    for b in j["benchmarks"]:
        one = b["name"].split("/")[1] == "1"  # Arg(1): one thread; Arg(0): all
        if one or threads > 1:
            k = 1 if one else threads
            out[k] = max(out.get(k, 0.0), b["bytes_per_second"] / 1e9)
            out.setdefault("by_benchmark", {})[b["name"]] = round(b["bytes_per_second"] / 1e9, 2)
    return out


def tessera_speed(build, model, threads, prefills):
    """decode_bench, int8 activations on packed weights (mode 2, the default path).

    Returns {'tg': tok/s, 'pp128': ..., 'bytes_per_token', 'isa'}."""
    flt = (f"^BM_(Decode/threads:{threads}/batch:1|Prefill/threads:{threads}/tokens:"
           f"({'|'.join(map(str, prefills))}))/mode:2/")
    env = dict(os.environ, TESSERA_BENCH_MODEL=model)
    j, _ = run_json([os.path.join(build, "benchmarks", "decode_bench"), f"--benchmark_filter={flt}",
                     "--benchmark_format=json"], env=env)
    out = {}
    for b in j["benchmarks"]:
        if b.get("error_occurred"):
            sys.exit(f"decode_bench: {b['name']}: {b.get('error_message')}")
        if b["name"].startswith("BM_Decode"):
            out["tg"] = b["items_per_second"]
            out["bytes_per_token"] = b["weight_GB/s"] * 1e9 / b["items_per_second"]
            out["isa"] = b.get("label", "")
        else:
            n = int(re.search(r"tokens:(\d+)", b["name"]).group(1))
            out[f"pp{n}"] = b["items_per_second"]
    return out


def llama_speed(peer_bin, model, threads, prefills, gen, reps, repack=True):
    """llama-bench: {'tg': tok/s of tg<gen>, 'pp128': ..., 'build': ...}."""
    j, _ = run_json([os.path.join(peer_bin, "llama-bench"), "-m", model, "-t", str(threads),
                     "-p", ",".join(map(str, prefills)), "-n", str(gen), "-r", str(reps),
                     "-o", "json"] + ([] if repack else ["--repack", "0"]))
    out = {}
    for t in j:
        # An sdist has no git history, so build_commit reads "unknown": the number identifies it.
        out["build"] = f"build {t.get('build_number', '?')} (commit {t.get('build_commit', '?')})"
        out["backend"] = f"{t.get('backends', t.get('backend', '?'))} {t.get('cpu_info', '')}"
        if t["n_gen"] > 0:
            out["tg"] = t["avg_ts"]
        else:
            out[f"pp{t['n_prompt']}"] = t["avg_ts"]
    if not repack:
        # Decode (batches of one token) does not reach the crashing path, so llama.cpp's decode is
        # also timed with its repacked / AMX weights, and the faster of the two counts.
        j, _ = run_json([os.path.join(peer_bin, "llama-bench"), "-m", model, "-t", str(threads),
                         "-p", "0", "-n", str(gen), "-r", str(reps), "-o", "json"])
        out["tg_no_repack"] = out["tg"]
        out["tg_repack"] = j[0]["avg_ts"]
        out["tg"] = max(out["tg"], out["tg_repack"])
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process (tessera serve or llama-server) on a free port, stopped on exit."""

    def __init__(self, kind, cmd, url, ready, logf):
        log("+", " ".join(cmd))
        self.kind, self.url = kind, url
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if ready == "stdout" else logf,
                                     stderr=logf, text=True)
        deadline = time.time() + 300
        if ready == "stdout":  # tessera serve prints READY <url> once warm
            for line in self.proc.stdout:
                if line.startswith("READY "):
                    self.url = line.split()[1]
                    break
            else:
                self.stop()
                sys.exit(f"{kind} exited before READY (log: {logf.name})")
            return
        while time.time() < deadline:  # llama-server: /health answers 200 once the model is in
            if self.proc.poll() is not None:
                sys.exit(f"{kind} exited (log: {logf.name})")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        sys.exit(f"{kind} did not become healthy (log: {logf.name})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bench(tessera, url, conc, a, tmp, seed=0):
    """One closed-loop run. Each run in a server's life needs its own seed: a prompt sent again
    hits the server's prefix cache (llama-server's slots reuse a cached prompt token by token), and
    the TTFT then measures the cache, not the prefill."""
    out = os.path.join(tmp, "bench.json")
    cmd = [tessera, "bench", "--base-url", url, "--model", NAME, "--tokenizer", NAME,
           "--concurrency", str(conc), "--num-requests", str(max(a.num_requests, conc * 2)),
           "--warmup", "2", "--input-len", str(a.input_len), "--output-len", str(a.output_len),
           "--seed", str(seed), "--timeout", "300", "--output", out]
    log("+", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        s = json.load(f)["summary"]
    return {"output_tok_s": s["output_token_throughput"], "ttft_p50_ms": s["ttft_ms"]["p50"],
            "itl_p50_ms": s["itl_ms"]["p50"], "completed": s["completed"], "failed": s["failed"],
            "token_counts_from": s["token_counts_from"]}


def serving(a, tessera, peer_bin, tmp):
    concs = [int(c) for c in a.concurrencies.split(",")]
    slots = max(concs)
    threads = max(int(t) for t in a.threads.split(","))
    ctx_per_slot = 2 * (a.input_len + a.output_len) + 256  # prompt + chat template + output
    rows = []
    for rep in range(a.repeats):
        for kind in ("tessera", "llama.cpp"):
            logf = open(os.path.join(tmp, f"{kind}-{rep}.log"), "w")
            if kind == "tessera":
                srv = Server(kind, [tessera, "serve", "--model", a.model, "--served-model-name",
                                    NAME, "--http-port", "0", "--threads", str(threads)],
                             None, "stdout", logf)
            else:
                port = free_port()
                srv = Server(kind, [os.path.join(peer_bin, "llama-server"), "-m", a.model,
                                    "--alias", NAME, "--host", "127.0.0.1", "--port", str(port),
                                    "-np", str(slots), "-c", str(slots * ctx_per_slot),
                                    "-t", str(threads), "-tb", str(threads), "--no-webui"]
                                   + ([] if a.llama_repack else ["--no-repack"]),
                             f"http://127.0.0.1:{port}", "health", logf)
            try:
                for i, c in enumerate(concs):
                    r = bench(tessera, srv.url, c, a, tmp, seed=i)
                    r.update(server=kind, concurrency=c, repeat=rep + 1)
                    rows.append(r)
            finally:
                srv.stop()
                logf.close()
    return {"slots": slots, "threads": threads, "input_len": a.input_len,
            "output_len": a.output_len, "points": rows}


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="Tessera's build dir")
    ap.add_argument("--peer-bin", default=os.path.expanduser("~/.cache/tessera-peer/bin"),
                    help="llama.cpp binaries (benchmarks/peer/build_llama_cpp.sh --print-dir)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="GGUF file both engines load")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--prefills", default="128,512", help="prefill lengths (pp)")
    ap.add_argument("--repeats", type=int, default=2, help="back-to-back pairs per case")
    ap.add_argument("--llama-reps", type=int, default=3, help="llama-bench -r")
    ap.add_argument("--concurrencies", default="1,8", help="serving: closed-loop clients")
    ap.add_argument("--num-requests", type=int, default=16, help="serving: per concurrency")
    ap.add_argument("--input-len", type=int, default=128, help="serving: prompt tokens")
    ap.add_argument("--output-len", type=int, default=64, help="serving: output tokens")
    ap.add_argument("--llama-no-repack", dest="llama_repack", action="store_false",
                    help="llama.cpp's prefill and server without its repacked / AMX weight "
                         "buffers (llama-bench --repack 0, llama-server --no-repack): its AMX "
                         "matmul crashes on batches of more than one token on some AMX machines "
                         "(build 11434); decode is timed both ways and the faster counts")
    ap.add_argument("--skip-speed", action="store_true", help="serving only")
    ap.add_argument("--skip-serving", action="store_true", help="speed only")
    ap.add_argument("--json", action="store_true", help="print only JSON on stdout")
    ap.add_argument("--save", help="also write the JSON here")
    ap.add_argument("--from-json", help="print the tables of a saved run; measure nothing")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            report(json.load(f), a.json)
        return

    tessera = os.path.join(a.build, "tessera")
    need = [tessera, os.path.join(a.peer_bin, "llama-bench"),
            os.path.join(a.peer_bin, "llama-server")]
    if not a.skip_speed:
        need += [os.path.join(a.build, "benchmarks", b) for b in ("decode_bench", "machine_bench")]
    missing = [p for p in need if not os.access(p, os.X_OK)]
    if missing:
        sys.exit("missing: " + ", ".join(missing) + " (build Tessera's benchmarks; run "
                 "benchmarks/peer/build_llama_cpp.sh)")
    if not os.path.isfile(a.model):
        sys.exit(f"no model file {a.model} (build/tessera models pull {NAME})")
    threads = [int(t) for t in a.threads.split(",")]
    prefills = [int(p) for p in a.prefills.split(",")]
    result = {"cpu": cpu_model(), "nproc": os.cpu_count(), "model": os.path.basename(a.model),
              "load_average_start": os.getloadavg(), "llama_repack": a.llama_repack}

    if not a.skip_speed:
        bw_before = read_bandwidth(a.build, max(threads), os.path.getsize(a.model))
        pairs = []
        for rep in range(a.repeats):
            for t in threads:
                ts = tessera_speed(a.build, a.model, t, prefills)
                ls = llama_speed(a.peer_bin, a.model, t, prefills, 64, a.llama_reps,
                                 a.llama_repack)
                pairs.append({"repeat": rep + 1, "threads": t, "tessera": ts, "llama.cpp": ls,
                              "load_average": os.getloadavg()[0]})
        bw_after = read_bandwidth(a.build, max(threads), os.path.getsize(a.model))
        for p in pairs:
            t = p["threads"]
            bw = max(bw_before.get(t, 0), bw_after.get(t, 0)) * 1e9  # the best ceiling seen
            bpt = p["tessera"]["bytes_per_token"]
            p["roofline_tok_s"] = bw / bpt
            for k in ("tessera", "llama.cpp"):
                p[k]["roofline_fraction"] = p[k]["tg"] / p["roofline_tok_s"]
            p["ratio"] = {k: p["tessera"][k] / p["llama.cpp"][k]
                          for k in ["tg"] + [f"pp{n}" for n in prefills]
                          if k in p["tessera"] and k in p["llama.cpp"]}
        result["read_GB_s"] = {"before": bw_before, "after": bw_after}
        result["speed"] = pairs
    if not a.skip_serving:
        with tempfile.TemporaryDirectory() as tmp:
            result["serving"] = serving(a, tessera, a.peer_bin, tmp)
    result["load_average_end"] = os.getloadavg()
    if a.save:
        with open(a.save, "w") as f:
            json.dump(result, f, indent=1)
    report(result, a.json)


def report(result, as_json):
    if as_json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    print(f"CPU: {result['cpu']} ({result['nproc']} CPUs), model {result['model']}, "
          f"load average at start {result['load_average_start'][0]:.1f}")
    if "speed" in result:
        p0 = result["speed"][0]
        print(f"Tessera int8 ISA: {p0['tessera']['isa']}; llama.cpp: {p0['llama.cpp']['build']} "
              f"{p0['llama.cpp']['backend']}"
              + ("" if result.get("llama_repack", True) else
                 " (prefill and server: repack / AMX buffers off; decode: the faster of on and off)"))
        bw = result["read_GB_s"]
        print(f"memory read GB/s (machine_bench), before: {bw['before']}, after: {bw['after']}; "
              f"weights read per decoded token: {p0['tessera']['bytes_per_token'] / 1e6:.1f} MB")
        print()
        print("| rep | threads | what | Tessera tok/s | llama.cpp tok/s | ratio | roofline tok/s "
              "| Tessera / roofline | llama.cpp / roofline |")
        print("|---|---|---|---|---|---|---|---|---|")
        for p in result["speed"]:
            for k in ["tg"] + sorted((k for k in p["tessera"] if k.startswith("pp")),
                                     key=lambda k: int(k[2:])):
                what = "decode (tg64)" if k == "tg" else f"prefill {k[2:]} (pp{k[2:]})"
                roof = (f"{p['roofline_tok_s']:.0f} | {p['tessera']['roofline_fraction']:.2f} | "
                        f"{p['llama.cpp']['roofline_fraction']:.2f}" if k == "tg" else " | | ")
                print(f"| {p['repeat']} | {p['threads']} | {what} | {fmt(p['tessera'].get(k))} | "
                      f"{fmt(p['llama.cpp'].get(k))} | {fmt(p['ratio'].get(k), 2)} | {roof} |")
    if "serving" in result:
        s = result["serving"]
        print()
        print(f"Serving: tessera bench, {s['input_len']} prompt / {s['output_len']} output tokens "
              f"(ignore_eos), {s['threads']} threads each; llama-server with {s['slots']} slots")
        print("| rep | concurrency | server | output tok/s | TTFT p50 ms | ITL p50 ms | failed |")
        print("|---|---|---|---|---|---|---|")
        for r in s["points"]:
            print(f"| {r['repeat']} | {r['concurrency']} | {r['server']} | {fmt(r['output_tok_s'])} "
                  f"| {fmt(r['ttft_p50_ms'])} | {fmt(r['itl_p50_ms'])} | {r['failed']} |")
        by = {}
        for r in s["points"]:
            by.setdefault((r["concurrency"], r["server"]), []).append(r)
        print()
        print("| concurrency | output tok/s ratio | TTFT p50 ratio | ITL p50 ratio "
              "(Tessera / llama.cpp, medians over repeats) |")
        print("|---|---|---|---|")
        for c in sorted({c for c, _ in by}):
            t, l = by.get((c, "tessera")), by.get((c, "llama.cpp"))
            if not t or not l:
                continue
            med = lambda rows, k: statistics.median(r[k] for r in rows if r[k] is not None)  # noqa
            print(f"| {c} | {med(t, 'output_tok_s') / med(l, 'output_tok_s'):.2f} | "
                  f"{med(t, 'ttft_p50_ms') / med(l, 'ttft_p50_ms'):.2f} | "
                  f"{med(t, 'itl_p50_ms') / med(l, 'itl_p50_ms'):.2f} |")


if __name__ == "__main__":
    main()
