"""End-to-end checks of `tessera bench` against a tiny OpenAI-style streaming server written here
(http.server in a thread, tokens at known gaps): the JSON schema and its numbers, errors by kind,
synthetic prompt lengths on the default model's tokenizer, ShareGPT input, and the sweep with its
PNG plots (benchmarks/plot_bench.py)."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BIN = os.environ.get("TESSERA_BIN", "build/tessera")
SRC = Path(os.environ.get("TESSERA_SOURCE_DIR", Path(__file__).resolve().parents[2]))
MODEL = Path(os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
FIRST_MS, GAP_MS, TOKENS = 100, 20, 5

pytestmark = pytest.mark.skipif(not Path(BIN).exists(), reason=f"{BIN} not built")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # body ends at EOF: the other framing than the C++ tests use

    def log_message(self, *args):
        pass

    def do_POST(self):
        t0 = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
            n = len(srv.bodies) - 1
        if srv.fail_every and n % srv.fail_every == 0:
            err = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(err)))
            self.end_headers()
            self.wfile.write(err)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chat = self.path.endswith("/chat/completions")
        for k in range(TOKENS):
            delay = t0 + (FIRST_MS + k * GAP_MS) / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            choice = {"index": 0, "delta": {"content": f"w{k}"}} if chat else {"index": 0, "text": f"w{k}"}
            self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
            self.wfile.flush()
        fin = {"index": 0, "finish_reason": "length", "delta": {}}
        self.wfile.write(f"data: {json.dumps({'choices': [fin]})}\n\n".encode())
        usage = {"prompt_tokens": 11, "completion_tokens": TOKENS, "total_tokens": 11 + TOKENS}
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.lock = threading.Lock()
    srv.bodies = []
    srv.fail_every = 0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def bench(srv, *args, timeout=60):
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    p = subprocess.run([BIN, "bench", "--base-url", url, "--model", "fake", *args],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "TESSERA_PYTHON": sys.executable, "TESSERA_SOURCE_DIR": str(SRC)})
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def test_json_schema_and_numbers(server, tmp_path):
    out = tmp_path / "run.json"
    p = bench(server, "--concurrency", "2", "--num-requests", "6", "--input-len", "16",
              "--output-len", str(TOKENS), "--tokenizer", "none", "--warmup", "1",
              "--goodput", "ttft:5000 tpot:1000", "--output", str(out))
    assert "Successful requests:" in p.stdout and "TTFT" in p.stdout
    res = json.loads(out.read_text())
    assert len(server.bodies) == 7  # one warm-up, not in the results
    body = server.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == TOKENS and body["model"] == "fake"
    s = res["summary"]
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        assert set(s[key]) >= {"mean", "p50", "p90", "p99"}
    for key in ("request_throughput", "output_token_throughput", "total_token_throughput",
                "goodput", "errors", "completed", "failed", "duration_s"):
        assert key in s
    assert s["completed"] == 6 and s["failed"] == 0 and s["errors"] == {}
    assert len(res["requests"]) == 6
    for r in res["requests"]:
        assert r["success"] and r["output_tokens"] == TOKENS and r["input_tokens"] == 11
        assert r["token_counts_from"] == "usage"
        assert r["ttft_ms"] >= FIRST_MS - 1
        assert len(r["itl_ms"]) == TOKENS - 1
        assert abs(sum(r["itl_ms"]) - (TOKENS - 1) * GAP_MS) < 60  # scheduling jitter only
        assert r["tpot_ms"] == pytest.approx((r["e2e_ms"] - r["ttft_ms"]) / (TOKENS - 1))
    assert s["output_token_throughput"] * s["duration_s"] == pytest.approx(6 * TOKENS)
    assert s["request_throughput"] * s["duration_s"] == pytest.approx(6)
    assert s["goodput"] == pytest.approx(s["request_throughput"])  # loose targets: all good
    ttfts = sorted(r["ttft_ms"] for r in res["requests"])
    assert s["ttft_ms"]["p50"] == pytest.approx((ttfts[2] + ttfts[3]) / 2)
    assert res["config"]["concurrency"] == 2 and res["config"]["endpoint"] == "chat"


def test_errors_are_counted_and_run_finishes(server, tmp_path):
    server.fail_every = 2  # requests 0, 2, 4 get a 503
    out = tmp_path / "err.json"
    bench(server, "--request-rate", "50", "--num-requests", "6", "--input-len", "8",
          "--output-len", "3", "--tokenizer", "none", "--endpoint", "completions", "--output", str(out))
    s = json.loads(out.read_text())["summary"]
    assert s["errors"] == {"http_503": 3} and s["completed"] == 3 and s["failed"] == 3
    assert "prompt" in server.bodies[0]


@pytest.mark.skipif(not MODEL.exists(), reason="default model not downloaded")
def test_synthetic_prompts_have_the_asked_length(server, tmp_path):
    seed = str(int.from_bytes(os.urandom(2), "little"))
    bench(server, "--concurrency", "4", "--num-requests", "4", "--input-len", "100",
          "--output-len", "3", "--seed", seed)
    assert len(server.bodies) == 4 and len({b["messages"][-1]["content"] for b in server.bodies}) == 4
    for body in server.bodies:
        text = body["messages"][-1]["content"]
        ids = json.loads(subprocess.run([BIN, "tokenize", "--json", "--no-special", text],
                                        capture_output=True, text=True, check=True).stdout)["ids"]
        assert 100 - 1 <= len(ids) <= 100 + 1, (seed, text)


def test_sharegpt_and_sweep_with_plots(server, tmp_path):
    data = [{"conversations": [{"from": "human", "value": f"question number {i} " + "word " * 20},
                               {"from": "gpt", "value": "answer " * 10}]} for i in range(6)]
    ds = tmp_path / "sharegpt.json"
    ds.write_text(json.dumps(data))
    outdir = tmp_path / "sweep"
    p = bench(server, "sweep", "--concurrencies", "1,3", "--num-requests", "3", "--dataset", str(ds),
              "--tokenizer", "none", "--output-dir", str(outdir), "--label", "t", "--plot")
    sweep = json.loads((outdir / "t-sweep.json").read_text())
    assert [pt["value"] for pt in sweep["points"]] == [1, 3]
    assert all(pt["summary"]["completed"] == 3 for pt in sweep["points"])
    prompts = {b["messages"][-1]["content"] for b in server.bodies}
    assert all(q.startswith("question number") for q in prompts)
    assert all(b["max_tokens"] == 18 for b in server.bodies)  # "answer " * 10: 70 chars / 4
    for png in ("t-sweep.png", "t-latency.png"):
        raw = (outdir / png).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 10000, png
    assert "concurrency" in p.stdout
