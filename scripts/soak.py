#!/usr/bin/env python3
"""Soak with faults: `tessera serve` under a steady open-loop load while its worker is killed or
stopped at random, then an account of every request and of what the server kept.

  1. start `tessera serve --model smollm2-135m-instruct --http-port 0` (its log goes to WORKDIR);
  2. measure capacity: a closed-loop `tessera bench` (--capacity-concurrency streams for
     --capacity-seconds); capacity in req/s = output tokens generated per second (cancelled
     requests' partial output included) / --output-len;
  3. drain, then read the RSS (VmRSS) of the server and of its worker: the after-warm-up baseline;
  4. run `tessera bench --request-rate R` (Poisson arrivals, R = --load-fraction x capacity) for
     round(R x --duration) requests while a fault lands at a random moment in every
     --fault-every window: SIGKILL of the worker and SIGSTOP of it, in turn (--fault-kinds). A
     stopped worker is left to the engine (it stops hearing heartbeats, SIGKILLs + SIGCONTs it and
     starts another); the next fault waits until /ready answers 200 and
     tessera:worker_restarts_total has counted the last one;
  5. classify each request from bench's per-request records:
       succeeded     a complete stream ([DONE] or a finish_reason);
       failed_clear  an HTTP error status whose body carried an OpenAI error message, or an SSE
                     error event with a message;
       unclear       an error status or error event without a message;
       lost          no response, a refused connection, a stream cut without an error event,
                     an unparseable response, or no answer within --timeout;
  6. after the load: wait for the engine to drain; KV blocks leaked = kv_cache_usage_perc x the
     block count with no request running or waiting; RSS at the end vs the baseline; restarts vs
     faults; old workers all reaped; /health, /ready and one final request answered; SIGTERM and a
     clean exit.

stdout: with --json one JSON object, nothing else; stderr: progress and a human summary.
Exit status 1 when lost, unclear or leaked blocks are not 0, the server died or stopped answering,
restarts != faults, a replaced worker was never reaped, or the final request failed; 2 on a setup
error (no binary, no model, the server did not start).
"""

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

MODEL_NAME = "smollm2-135m-instruct"
LOST_KINDS = {"timeout", "connect", "disconnected", "bad_response", "cancelled"}


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# /proc and HTTP helpers

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_state(pid):
    """The one-letter state of /proc/PID/stat (R, S, T, Z, ...), None when the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError):
        return None


def children(ppid):
    """[(pid, state, cmdline)] of the processes whose parent is ppid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            rest = s[s.rindex(")") + 2:].split()
            if int(rest[1]) != ppid:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out.append((int(d), rest[0], cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out


def workers(server_pid):
    """Live (not zombie) worker children of the server."""
    return [p for p, st, cmd in children(server_pid) if st != "Z" and " worker " in f" {cmd} "]


def http_get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


def metrics(url):
    """{name or name{labels}: value} from /metrics; {} when it does not answer."""
    code, text = http_get(url + "/metrics")
    if code != 200:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+?)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def msum(m, name):
    """Sum of a metric over its label sets (0 when absent: counters appear on first use)."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def num_blocks(m):
    for k in m:
        if k.startswith("tessera:cache_config_info{"):
            g = re.search(r'num_gpu_blocks="(\d+)"', k)
            if g:
                return int(g.group(1))
    return None


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------

class Server:
    def __init__(self, args, workdir):
        self.args = args
        self.log_path = os.path.join(workdir, "server.log")
        self.logf = open(self.log_path, "w")
        cmd = [args.bin, "serve", "--model", args.model, "--http-port", "0", *args.serve_arg]
        log("starting: " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf, text=True)
        self.url = None
        deadline = time.time() + args.start_timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                self.url = line.split()[1]
                break
        if not self.url:
            self.proc.kill()
            self.proc.wait()
            raise SetupError(f"tessera serve did not print READY (log: {self.log_path})")
        # Drain stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=60):
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "killed after SIGTERM timeout"


def run_bench(args, url, out_path, extra, timeout_s):
    cmd = [args.bin, "bench", "--base-url", url, "--model", args.model, "--endpoint", args.endpoint,
           "--input-len", str(args.input_len), "--output-len", str(args.output_len),
           "--timeout", str(args.timeout), "--quiet", "--output", out_path, *extra]
    log("bench: " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout_s)
    if p.returncode != 0 or not os.path.exists(out_path):
        raise SetupError(f"tessera bench failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    with open(out_path) as f:
        return json.load(f)


def wait_idle(url, timeout):
    """Waits until no request runs or waits and the KV cache is empty; returns the last metrics."""
    deadline = time.time() + timeout
    m = {}
    while time.time() < deadline:
        m = metrics(url)
        if m and msum(m, "tessera:num_requests_running") == 0 and \
                msum(m, "tessera:num_requests_waiting") == 0 and \
                msum(m, "tessera:kv_cache_usage_perc") == 0:
            return m, True
        time.sleep(0.5)
    return m, False


class Faults(threading.Thread):
    """Injects one fault at a random moment in each fault_every window of the load."""

    def __init__(self, args, server, t0, rng):
        super().__init__(daemon=True)
        self.args, self.server, self.t0, self.rng = args, server, t0, rng
        self.kinds = args.fault_kinds.split(",")
        self.events = []
        self.errors = []
        self.stop_flag = threading.Event()
        n = int(args.duration // args.fault_every) if args.fault_every > 0 else 0
        # A fault in the middle half of each window: never at the very start or the very end.
        self.plan = [(k + rng.uniform(0.25, 0.75)) * args.fault_every for k in range(n)]

    def now(self):
        return time.monotonic() - self.t0

    def wait_recovered(self, restarts_wanted, timeout):
        """Seconds until /ready is 200 with restarts_total >= wanted and a new live worker."""
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            if not self.server.alive():
                return None
            m = metrics(self.server.url)
            code, _ = http_get(self.server.url + "/ready", timeout=5)
            if code == 200 and msum(m, "tessera:worker_restarts_total") >= restarts_wanted and \
                    workers(self.server.pid):
                return time.monotonic() - t
            time.sleep(0.25)
        return None

    def run(self):
        for i, at in enumerate(self.plan):
            if self.stop_flag.wait(max(0.0, at - self.now())):
                return
            kind = self.kinds[i % len(self.kinds)]
            ws = workers(self.server.pid)
            if len(ws) != 1:
                self.errors.append(f"fault {i}: expected one worker, found {ws}")
                continue
            pid = ws[0]
            m = metrics(self.server.url)
            before = msum(m, "tessera:worker_restarts_total")
            ev = {"index": i, "kind": kind, "t_s": round(self.now(), 3), "worker_pid": pid,
                  "restarts_before": before,
                  "requests_running": msum(m, "tessera:num_requests_running"),
                  "requests_waiting": msum(m, "tessera:num_requests_waiting")}
            os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            log(f"fault {i}: {'SIGKILL' if kind == 'kill' else 'SIGSTOP'} worker {pid} "
                f"at t={ev['t_s']:.1f}s ({ev['requests_running']:.0f} requests running, "
                f"{ev['requests_waiting']:.0f} waiting)")
            rec = self.wait_recovered(before + 1, self.args.recover_timeout)
            ev["recovered_s"] = None if rec is None else round(rec, 3)
            ev["recovered_at_s"] = round(self.now(), 3)
            new = workers(self.server.pid)
            ev["new_worker_pid"] = new[0] if new else None
            # The old worker must be gone, not a zombie nor still stopped.
            t = time.monotonic()
            while proc_state(pid) is not None and time.monotonic() - t < 15:
                time.sleep(0.25)
            ev["old_worker_state"] = proc_state(pid)  # None: reaped
            if rec is None:
                self.errors.append(f"fault {i}: not recovered within {self.args.recover_timeout}s")
                log(f"fault {i}: NOT recovered within {self.args.recover_timeout}s")
            else:
                log(f"fault {i}: recovered in {rec:.1f}s, new worker {ev['new_worker_pid']}, "
                    f"old worker {'reaped' if ev['old_worker_state'] is None else 'state ' + ev['old_worker_state']}")
            self.events.append(ev)


class RssSampler(threading.Thread):
    def __init__(self, server, every=10.0):
        super().__init__(daemon=True)
        self.server, self.every = server, every
        self.samples = []  # (t, server_kib, worker_kib)
        self.stop_flag = threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.stop_flag.wait(self.every):
            ws = workers(self.server.pid)
            self.samples.append((round(time.monotonic() - t0, 1), rss_kib(self.server.pid),
                                 rss_kib(ws[0]) if ws else None))


def classify(rec):
    if rec.get("success"):
        return "succeeded"
    kind = rec.get("error") or "unknown"
    msg = (rec.get("error_message") or "").strip()
    if kind in LOST_KINDS or kind == "unknown":
        return "lost"
    if kind.startswith("http_") or kind == "stream_error":
        # bench puts the error object's message here; a body without one stays raw text.
        raw = msg.startswith("{") or msg.startswith("<") or msg in ("", '""', "null")
        return "unclear" if raw else "failed_clear"
    return "lost"


def soak(args):
    if not os.path.exists(args.bin):
        raise SetupError(f"{args.bin} not found (build it, or pass --bin / TESSERA_BIN)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="tessera-soak-")
    os.makedirs(workdir, exist_ok=True)
    log(f"workdir {workdir}")
    rng = random.Random(args.seed)
    result = {"config": {k: v for k, v in vars(args).items() if k not in ("json",)},
              "workdir": workdir, "problems": []}
    problems = result["problems"]
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = None
    result["machine"] = {"cpu": cpu, "cpus": os.cpu_count()}

    srv = Server(args, workdir)
    result["server_pid"] = srv.pid
    seen_workers = set(workers(srv.pid))
    try:
        # --- capacity
        if args.rate:
            rate = args.rate
            result["capacity"] = None
        else:
            cap = run_bench(args, srv.url, os.path.join(workdir, "capacity.json"),
                            ["--concurrency", str(args.capacity_concurrency),
                             "--duration", str(args.capacity_seconds), "--seed", str(args.seed + 1)],
                            args.capacity_seconds + args.timeout + 60)
            s = cap["summary"]
            out_tokens = sum(r.get("output_tokens") or 0 for r in cap["requests"])
            tok_s = out_tokens / s["duration_s"]
            req_s = tok_s / args.output_len
            rate = round(args.load_fraction * req_s, 3)
            result["capacity"] = {"concurrency": args.capacity_concurrency,
                                  "duration_s": round(s["duration_s"], 2),
                                  "completed": s["completed"], "cancelled_at_bound": s["cancelled"],
                                  "failed": s["failed"],
                                  "output_tok_s": round(tok_s, 2), "req_s": round(req_s, 3),
                                  "completed_req_s": round(s["request_throughput"], 3)}
            log(f"capacity: {tok_s:.1f} output tok/s = {req_s:.2f} req/s of {args.output_len} "
                f"tokens ({s['completed']} completed, {s['cancelled']} cut at the bound)")
            if s["failed"]:
                problems.append(f"{s['failed']} requests failed during the capacity run")
        if rate <= 0:
            raise SetupError("measured capacity is 0 req/s")
        m, idle = wait_idle(srv.url, 60)
        if not idle:
            problems.append("the server did not drain after the capacity run")
        ws = workers(srv.pid)
        base = {"server_kib": rss_kib(srv.pid), "worker_kib": rss_kib(ws[0]) if ws else None,
                "worker_pid": ws[0] if ws else None}
        m0 = metrics(srv.url)
        blocks = num_blocks(m0)
        log(f"baseline RSS: server {base['server_kib']} KiB, worker {base['worker_kib']} KiB")

        # --- load with faults
        n = max(1, round(rate * args.duration))
        result["load"] = {"request_rate": rate, "num_requests": n, "duration_s": args.duration,
                          "fault_every_s": args.fault_every}
        log(f"load: {rate} req/s Poisson, {n} requests over ~{args.duration}s, "
            f"a fault every {args.fault_every}s ({args.fault_kinds})")
        t0 = time.monotonic()
        faults = Faults(args, srv, t0, rng)
        sampler = RssSampler(srv)
        faults.start()
        sampler.start()
        load_path = os.path.join(workdir, "load.json")
        bench_error = None
        try:
            load = run_bench(args, srv.url, load_path,
                             ["--request-rate", str(rate), "--num-requests", str(n),
                              "--seed", str(args.seed)],
                             args.duration * 3 + args.timeout + 300)
        except (SetupError, subprocess.TimeoutExpired) as e:
            load, bench_error = None, str(e)
        load_wall = time.monotonic() - t0
        # Poisson arrivals may end a little before --duration: the planned faults still land
        # (every one inside --duration), then the last one must have recovered.
        if bench_error:
            faults.stop_flag.set()
        faults.join(timeout=max(0.0, args.duration - load_wall) + args.recover_timeout + 30)
        if faults.is_alive():
            faults.stop_flag.set()
            problems.append("the fault thread did not finish")
        sampler.stop_flag.set()
        result["load"]["wall_s"] = round(load_wall, 1)
        if bench_error:
            problems.append("the load client failed: " + bench_error)
        for ev in faults.events:
            if ev["new_worker_pid"]:
                seen_workers.add(ev["new_worker_pid"])
            seen_workers.add(ev["worker_pid"])

        # --- outcomes
        counts = {"sent": 0, "succeeded": 0, "failed_clear": 0, "unclear": 0, "lost": 0}
        by_kind, examples, lost_records = {}, {}, []
        e2e, ttft = [], []
        windows = [(ev["t_s"], ev["recovered_at_s"]) for ev in faults.events]
        outside = 0
        for r in (load or {}).get("requests", []):
            counts["sent"] += 1
            c = classify(r)
            counts[c] += 1
            if c == "succeeded":
                e2e.append(r["e2e_ms"])
                if r.get("ttft_ms") is not None:
                    ttft.append(r["ttft_ms"])
                continue
            key = f"{r.get('error')} {r.get('error_message', '')[:120]}"
            by_kind[r.get("error")] = by_kind.get(r.get("error"), 0) + 1
            examples.setdefault(key, 0)
            examples[key] += 1
            # bench's clock starts a little after we launched it: windows get some slack.
            a, b = r["start_s"], r["start_s"] + r["e2e_ms"] / 1000
            if not any(a - 5 <= w1 and b + 5 >= w0 for w0, w1 in windows):
                outside += 1
            if c in ("lost", "unclear"):
                lost_records.append({k: r.get(k) for k in ("index", "error", "error_message",
                                                           "http_status", "start_s", "e2e_ms",
                                                           "output_tokens")})
        result["requests"] = counts
        result["errors_by_kind"] = by_kind
        result["error_messages"] = dict(sorted(examples.items(), key=lambda kv: -kv[1])[:10])
        result["failed_outside_fault_windows"] = outside
        result["lost_requests"] = lost_records[:50]
        result["latency_ms"] = {"e2e_p50": pct(e2e, 50), "e2e_p99": pct(e2e, 99),
                                "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99)}
        if load:
            result["load"]["bench_duration_s"] = round(load["summary"]["duration_s"], 1)
            result["load"]["output_tok_s"] = round(load["summary"]["output_token_throughput"], 2)

        # --- faults vs restarts
        m1, idle = wait_idle(srv.url, args.drain_timeout)
        restarts = msum(m1, "tessera:worker_restarts_total") - msum(m0, "tessera:worker_restarts_total")
        result["faults"] = {"planned": len(faults.plan), "injected": len(faults.events),
                            "kill": sum(e["kind"] == "kill" for e in faults.events),
                            "stop": sum(e["kind"] == "stop" for e in faults.events),
                            "worker_restarts": int(restarts),
                            "recovery_s": [e["recovered_s"] for e in faults.events],
                            "events": faults.events, "errors": faults.errors}
        problems.extend(faults.errors)
        if restarts != len(faults.events):
            problems.append(f"{int(restarts)} worker restarts for {len(faults.events)} faults")
        unreaped = [e["worker_pid"] for e in faults.events if e["old_worker_state"] is not None]
        if unreaped:
            problems.append(f"replaced workers not reaped: {unreaped}")

        # --- end state
        ws = workers(srv.pid)
        zombies = [p for p, st, _ in children(srv.pid) if st == "Z"]
        kv = msum(m1, "tessera:kv_cache_usage_perc")
        leaked = round(kv * blocks) if blocks is not None else None
        if kv and not leaked:
            leaked = 1  # any usage at all is a leak, however it rounds
        end = {"server_kib": rss_kib(srv.pid), "worker_kib": rss_kib(ws[0]) if ws else None,
               "worker_pid": ws[0] if ws else None}
        samples = sampler.samples
        srv_series = [s[1] for s in samples if s[1]]
        wrk_series = [s[2] for s in samples if s[2]]
        result["rss_kib"] = {
            "server_start": base["server_kib"], "server_end": end["server_kib"],
            "server_drift": (end["server_kib"] - base["server_kib"])
            if end["server_kib"] and base["server_kib"] else None,
            "server_max": max(srv_series, default=None),
            "worker_start": base["worker_kib"], "worker_end": end["worker_kib"],
            "worker_start_pid": base["worker_pid"], "worker_end_pid": end["worker_pid"],
            "worker_drift": (end["worker_kib"] - base["worker_kib"])
            if end["worker_kib"] and base["worker_kib"] else None,
            "worker_max": max(wrk_series, default=None),
            "samples": len(samples)}
        with open(os.path.join(workdir, "rss.json"), "w") as f:
            json.dump(samples, f)
        health, _ = http_get(srv.url + "/health")
        ready, _ = http_get(srv.url + "/ready")
        final_ok, final_text = False, ""
        try:
            body = json.dumps({"model": args.model, "max_tokens": 8, "temperature": 0,
                               "messages": [{"role": "user", "content": "Say hello."}]}).encode()
            req = urllib.request.Request(srv.url + "/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                j = json.loads(r.read())
                final_text = j["choices"][0]["message"]["content"]
                final_ok = r.status == 200 and j["choices"][0].get("finish_reason") in ("stop", "length")
        except Exception as e:  # noqa: BLE001 - reported, not raised
            final_text = f"{type(e).__name__}: {e}"
        result["end"] = {
            "drained": idle, "kv_cache_usage_perc": kv, "kv_blocks_total": blocks,
            "kv_blocks_leaked": leaked,
            "requests_running": msum(m1, "tessera:num_requests_running"),
            "requests_waiting": msum(m1, "tessera:num_requests_waiting"),
            "live_workers": len(ws), "zombie_children": zombies,
            "health": health, "ready": ready, "final_request_ok": final_ok,
            "final_request_text": final_text[:200],
            "server_success_total": msum(m1, "tessera:request_success_total"),
            "server_errors_total": msum(m1, "tessera:request_errors_total")}
        if not idle:
            problems.append(f"not drained after {args.drain_timeout}s: running "
                            f"{msum(m1, 'tessera:num_requests_running')}, waiting "
                            f"{msum(m1, 'tessera:num_requests_waiting')}, kv {kv}")
        if leaked:
            problems.append(f"{leaked} KV blocks leaked (kv_cache_usage_perc {kv})")
        if counts["lost"]:
            problems.append(f"{counts['lost']} requests lost")
        if counts["unclear"]:
            problems.append(f"{counts['unclear']} requests failed without a clear error")
        if len(ws) != 1:
            problems.append(f"{len(ws)} live workers at the end")
        if zombies:
            problems.append(f"zombie children: {zombies}")
        if health != 200 or ready != 200:
            problems.append(f"/health {health}, /ready {ready} at the end")
        if not final_ok:
            problems.append("final request failed: " + final_text)
        if counts["sent"] == 0:
            problems.append("no request was sent")
    finally:
        alive = srv.alive()
        rc = srv.stop()
        result["server_alive_at_end"] = alive
        result["server_exit"] = rc
        if not alive:
            problems.append(f"the server died (exit {rc}); log: {srv.log_path}")
        elif rc != 0:
            problems.append(f"the server did not exit cleanly on SIGTERM: {rc}")
        time.sleep(0.5)
        left = [p for p in seen_workers if proc_state(p) not in (None, "Z")]
        result["workers_left_after_exit"] = left
        if left:
            problems.append(f"worker processes left after the server exited: {left}")
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
    result["ok"] = not problems
    return result


def summary(r):
    q, f, e, rss = r.get("requests", {}), r.get("faults", {}), r.get("end", {}), r.get("rss_kib", {})
    cap = r.get("capacity") or {}
    lat = r.get("latency_ms", {})
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    lines = [
        "==================== Soak with faults ====================",
        f"capacity:          {cap.get('output_tok_s', '-')} output tok/s = {cap.get('req_s', '-')} req/s",
        f"load:              {r.get('load', {}).get('request_rate')} req/s for "
        f"{r.get('load', {}).get('duration_s')} s (wall {r.get('load', {}).get('wall_s')} s)",
        f"requests sent:     {q.get('sent')}",
        f"  succeeded:       {q.get('succeeded')}",
        f"  failed, clearly: {q.get('failed_clear')}  {r.get('errors_by_kind', {})}",
        f"  unclear:         {q.get('unclear')}",
        f"  lost:            {q.get('lost')}",
        f"faults injected:   {f.get('injected')} (kill {f.get('kill')}, stop {f.get('stop')}), "
        f"worker restarts {f.get('worker_restarts')}, recovery s {f.get('recovery_s')}",
        f"KV blocks leaked:  {e.get('kv_blocks_leaked')} of {e.get('kv_blocks_total')}",
        f"RSS server KiB:    {rss.get('server_start')} -> {rss.get('server_end')} "
        f"(max {rss.get('server_max')})",
        f"RSS worker KiB:    {rss.get('worker_start')} (pid {rss.get('worker_start_pid')}) -> "
        f"{rss.get('worker_end')} (pid {rss.get('worker_end_pid')}, max {rss.get('worker_max')})",
        f"latency ms:        e2e p50 {fmt(lat.get('e2e_p50'))} p99 {fmt(lat.get('e2e_p99'))}, "
        f"ttft p50 {fmt(lat.get('ttft_p50'))} p99 {fmt(lat.get('ttft_p99'))}",
        f"end:               /health {e.get('health')}, /ready {e.get('ready')}, final request "
        f"{'ok' if e.get('final_request_ok') else 'FAILED'}, server exit {r.get('server_exit')}",
        f"result:            {'OK' if r.get('ok') else 'FAILED'}",
    ]
    lines += [f"  problem: {p}" for p in r.get("problems", [])]
    lines.append(f"workdir:           {r.get('workdir')} (server.log, load.json, rss.json)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("TESSERA_BIN", "build/tessera"),
                    help="the tessera binary (default $TESSERA_BIN or build/tessera)")
    ap.add_argument("--model", default=MODEL_NAME)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    ap.add_argument("--fault-every", type=float, default=120,
                    help="one fault at a random moment in each window of this many seconds (0: none)")
    ap.add_argument("--fault-kinds", default="kill,stop",
                    help="cycle of fault kinds, kill (SIGKILL) and/or stop (SIGSTOP) (default kill,stop)")
    ap.add_argument("--load-fraction", type=float, default=0.7, help="load = this x capacity (0.7)")
    ap.add_argument("--rate", type=float, default=0, help="request rate (req/s): skips the capacity run")
    ap.add_argument("--capacity-seconds", type=float, default=40)
    ap.add_argument("--capacity-concurrency", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--endpoint", default="chat", choices=["chat", "completions"])
    ap.add_argument("--timeout", type=float, default=120, help="per-request timeout: beyond it, lost")
    ap.add_argument("--recover-timeout", type=float, default=90,
                    help="seconds a fault may take until /ready and a new worker")
    ap.add_argument("--drain-timeout", type=float, default=60)
    ap.add_argument("--start-timeout", type=float, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", help="server log and bench results (default a new /tmp dir)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `tessera serve` argument")
    ap.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    args = ap.parse_args(argv)
    for k in args.fault_kinds.split(","):
        if k not in ("kill", "stop"):
            ap.error(f"--fault-kinds: unknown kind {k!r} (kill, stop)")
    try:
        r = soak(args)
    except SetupError as e:
        log(f"error: {e}")
        if args.json:
            print(json.dumps({"ok": False, "setup_error": str(e)}))
        return 2
    print(summary(r), file=sys.stderr)
    if args.json:
        print(json.dumps(r, indent=1))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
