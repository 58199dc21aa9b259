"""The real server under load and abuse: 64 concurrent streams each equal to its solo greedy
result with the KV cache empty afterwards, aborts that free blocks, seeds and logprobs through the
openai client, and 30+ malformed or hostile requests that each get the right error while a
well-formed stream keeps going."""

import concurrent.futures
import json
import os
import re
import socket
import sys
import threading
import time

import openai
import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import MODEL, start_server  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")
NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def url():
    proc, url = start_server("--kv-cache-mb", "128", "--no-warmup", "--max-num-seqs", "64")
    yield url
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def metric(url, name):
    text = requests.get(url + "/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_kv_empty(url):
    for _ in range(100):
        if metric(url, "tessera:kv_cache_usage_perc") == 0.0 and metric(url, "tessera:num_requests_running") == 0:
            return True
        time.sleep(0.1)
    return False


def test_64_concurrent_streams_equal_solo_results_and_free_the_cache(url):
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
    prompts = [f"Fact {i}: the ocean" for i in range(8)]
    kw = dict(model=NAME, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    solo = {p: c.completions.create(prompt=p, **kw).choices[0].text for p in prompts}

    def stream(i):
        p = prompts[i % 8]
        return p, "".join(ch.choices[0].text for ch in c.completions.create(prompt=p, stream=True, **kw)
                          if ch.choices)

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        results = list(ex.map(stream, range(64)))
    assert len(results) == 64
    for p, text in results:
        assert text == solo[p]
    assert wait_kv_empty(url)


def test_abort_mid_stream_frees_blocks(url):
    before = metric(url, "tessera:request_aborts_total")
    host, port = url.split("//")[1].split(":")
    body = json.dumps({"model": NAME, "prompt": "Write a long essay.", "max_tokens": 2000,
                       "stream": True, "ignore_eos": True}).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert b"data:" in sock.recv(4096) or b"data:" in sock.recv(4096)
    sock.close()  # the client vanishes mid-stream
    for _ in range(100):
        if metric(url, "tessera:request_aborts_total") > before:
            break
        time.sleep(0.1)
    assert metric(url, "tessera:request_aborts_total") > before
    assert wait_kv_empty(url)


def test_seed_reproducibility_and_logprobs(url):
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
    kw = dict(model=NAME, messages=[{"role": "user", "content": "Invent a word."}], max_tokens=12,
              temperature=1.0, seed=1234)
    a = c.chat.completions.create(**kw).choices[0].message.content
    b = c.chat.completions.create(**kw).choices[0].message.content
    assert a == b
    r = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                  temperature=0, logprobs=True, top_logprobs=3, n=2)
    assert len(r.choices) == 2
    for ch in r.choices:
        lp = ch.logprobs.content
        assert len(lp) == r.usage.completion_tokens // 2 or len(lp) > 0
        for tok in lp:
            assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
            assert tok.top_logprobs[0].logprob >= tok.top_logprobs[-1].logprob
    assert r.choices[0].message.content == r.choices[1].message.content  # greedy, n=2


BAD = [
    (b"{not json", 400), (b"[]", 400), (b'"a string"', 400), (b"{}", 400),
    (json.dumps({"prompt": 5}).encode(), 400),
    (json.dumps({"prompt": "x", "max_tokens": -1}).encode(), 400),
    (json.dumps({"prompt": "x", "max_tokens": "ten"}).encode(), 400),
    (json.dumps({"prompt": "x", "max_tokens": 10 ** 9}).encode(), 400),
    (json.dumps({"prompt": "x", "n": 10 ** 6}).encode(), 400),
    (json.dumps({"prompt": "x", "n": 0}).encode(), 400),
    (json.dumps({"prompt": "x", "temperature": -1}).encode(), 400),
    (json.dumps({"prompt": "x", "temperature": "hot"}).encode(), 400),
    (json.dumps({"prompt": "x", "top_p": 0}).encode(), 400),
    (json.dumps({"prompt": "x", "top_p": 7}).encode(), 400),
    (json.dumps({"prompt": "x", "top_k": -5}).encode(), 400),
    (json.dumps({"prompt": "x", "min_p": 2}).encode(), 400),
    (json.dumps({"prompt": "x", "presence_penalty": 9}).encode(), 400),
    (json.dumps({"prompt": "x", "frequency_penalty": -9}).encode(), 400),
    (json.dumps({"prompt": "x", "logprobs": 1000}).encode(), 400),
    (json.dumps({"prompt": "x", "stop": list("abcdefghijklmnop")}).encode(), 400),
    (json.dumps({"prompt": "x", "stop": 3}).encode(), 400),
    (json.dumps({"prompt": "x", "logit_bias": {"abc": 1}}).encode(), 400),
    (json.dumps({"prompt": "x", "logit_bias": {"99999999": 1}}).encode(), 400),
    (json.dumps({"prompt": [99999999]}).encode(), 400),
    (json.dumps({"prompt": [-1]}).encode(), 400),
    (json.dumps({"prompt": []}).encode(), 400),
    (json.dumps({"prompt": "x", "model": "gpt-4"}).encode(), 404),
    (json.dumps({"prompt": "x", "seed": "abc"}).encode(), 400),
    (json.dumps({"prompt": "x", "stream": "yes"}).encode(), 400),
    (b'{"prompt": "\xff\xfe invalid utf8"}', 400),
    (b'{"prompt": "x", "max_tokens": 1e400}', 400),
    (b" " * (2 << 20), 413),
]


def test_request_larger_than_the_cache_is_refused_up_front(url):
    r = requests.post(url + "/v1/completions", timeout=30,
                      json={"model": NAME, "prompt": "x", "max_tokens": 8000, "stream": True})
    assert r.status_code == 400 and "KV blocks" in r.json()["error"]["message"]


def test_hostile_requests_get_errors_while_a_stream_keeps_going(url):
    done = {}

    def good_stream():
        r = requests.post(url + "/v1/completions", stream=True, timeout=300,
                          json={"model": NAME, "prompt": "Count to twenty:", "max_tokens": 48,
                                "stream": True, "temperature": 0, "ignore_eos": True})
        done["lines"] = [l for l in r.iter_lines() if l]

    t = threading.Thread(target=good_stream)
    t.start()
    # A slow-loris client: a connection that sends half a request and stalls.
    host, port = url.split("//")[1].split(":")
    loris = socket.create_connection((host, int(port)))
    loris.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    for body, status in BAD:
        r = requests.post(url + "/v1/completions", data=body, timeout=60,
                          headers={"content-type": "application/json"})
        assert r.status_code == status, (body[:80], r.status_code, r.text[:200])
        err = r.json()["error"]
        assert err["message"] and err["type"]
    assert requests.get(url + "/v1/nothing", timeout=10).status_code == 404
    assert requests.delete(url + "/v1/completions", timeout=10).status_code == 405
    t.join(timeout=300)
    loris.close()
    lines = done["lines"]
    assert lines[-1] == b"data: [DONE]"
    assert any(b'"finish_reason":"length"' in l for l in lines)
    assert wait_kv_empty(url)
