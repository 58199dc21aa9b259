"""`tessera serve` on the default model, driven by real clients: the official `openai` Python
client (chat and completions, streaming and not), curl-style raw HTTP via `requests` for health,
metrics and errors, concurrent requests, and a clean SIGTERM shutdown."""

import concurrent.futures
import os
import signal
import subprocess
import time

import openai
import pytest
import requests

MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
BIN = os.environ.get("TESSERA_BIN", "build/tessera")
pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([BIN, "serve", "--model", "smollm2-135m-instruct", "--http-port", "0",
                             "--kv-cache-mb", "128", "--drain-timeout", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("READY "):
            url = line.split()[1]
            break
    assert url, f"server did not start: {lines} {proc.stderr.read() if proc.poll() is not None else ''}"
    assert any("Paris" in l for l in lines), lines  # the warm-up answer
    yield url, proc
    if proc.poll() is None:
        proc.kill()


def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


def test_chat_completion_greedy(server):
    url, _ = server
    r = client(url).chat.completions.create(
        model="smollm2-135m-instruct", temperature=0, max_tokens=32,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 10


def test_streaming_matches_non_streaming(server):
    url, _ = server
    c = client(url)
    kw = dict(model="smollm2-135m-instruct", temperature=0, max_tokens=24,
              messages=[{"role": "user", "content": "List three fruits."}])
    whole = c.chat.completions.create(**kw).choices[0].message.content
    parts, finish = [], None
    for chunk in c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        else:
            assert chunk.usage.completion_tokens > 0
    assert "".join(parts) == whole
    assert finish in ("stop", "length")


def test_completions_with_stop(server):
    url, _ = server
    r = client(url).completions.create(model="smollm2-135m-instruct", prompt="1, 2, 3, 4,",
                                        temperature=0, max_tokens=20, stop=["7"])
    assert "7" not in r.choices[0].text
    assert r.choices[0].finish_reason == "stop"


def test_concurrent_requests_all_complete(server):
    url, _ = server
    c = client(url)

    def one(i):
        return c.completions.create(model="smollm2-135m-instruct", prompt=f"Story {i}:",
                                    max_tokens=8, temperature=0.8, seed=i).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        outs = list(ex.map(one, range(32)))
    assert len(outs) == 32


def test_errors_health_and_metrics(server):
    url, _ = server
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert requests.get(url + "/ready", timeout=10).status_code == 200
    r = requests.post(url + "/v1/chat/completions", json={"model": "nope", "messages": []}, timeout=10)
    assert r.status_code in (400, 404) and "error" in r.json()
    r = requests.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 100000}, timeout=10)
    assert r.status_code == 400 and "100000" in r.json()["error"]["message"]
    r = requests.post(url + "/v1/completions", data="{not json", timeout=10,
                      headers={"content-type": "application/json"})
    assert r.status_code == 400
    m = requests.get(url + "/metrics", timeout=10).text
    for name in ("tessera:num_requests_running", "tessera:kv_cache_usage_perc",
                 "tessera:time_to_first_token_seconds_bucket", "tessera:generation_tokens_total",
                 "tessera:prefix_cache_queries_total", "tessera:request_success_total"):
        assert name in m, name


def test_killed_worker_fails_its_requests_and_is_restarted(server):
    url, proc = server
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children  # the worker process
    c = client(url)
    stream = c.completions.create(model="smollm2-135m-instruct", prompt="Tell a long story.",
                                  max_tokens=2000, temperature=0, stream=True,
                                  extra_body={"ignore_eos": True})
    next(iter(stream))  # generation has started
    os.kill(int(children[0]), signal.SIGKILL)
    with pytest.raises(Exception) as e:
        for _ in stream:
            pass
    assert "worker" in str(e.value).lower() or "error" in str(e.value).lower()
    # The server restarts the worker and serves again.
    deadline = time.time() + 60
    while time.time() < deadline and requests.get(url + "/ready", timeout=10).status_code != 200:
        time.sleep(0.5)
    r = c.completions.create(model="smollm2-135m-instruct", prompt="Hello", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    new_children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(new_children) == 1 and new_children != children
    assert "tessera:worker_restarts_total 1" in requests.get(url + "/metrics", timeout=10).text


def test_sigterm_exits_cleanly(server):
    _, proc = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
