"""`tessera serve` on the default model through the official OpenAI Python client and raw HTTP:
chat and completions (plain and streamed, which must agree under greedy decoding), n, stop,
include_usage, /v1/models, /tokenize against `tessera tokenize`, error objects, /metrics."""

import json
import os
import re
import subprocess
import threading

import pytest
import requests

MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
BIN = os.environ.get("TESSERA_BIN", "build/tessera")
pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")
NAME = "smollm2-135m-instruct"
KEY = "sk-test-key"


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [BIN, "serve", "--model", NAME, "--http-port", "0", "--api-key", KEY, "--kv-cache-mb", "64",
         "--no-warmup"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
    url = None
    for line in proc.stdout:  # "READY http://127.0.0.1:PORT" once it listens
        m = re.match(r"READY (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("tessera serve did not come up:\n" + "".join(stderr_lines[-30:]))
    yield url
    proc.terminate()
    assert proc.wait(timeout=60) == 0, "".join(stderr_lines[-30:])


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


AUTH = {"Authorization": "Bearer " + KEY}
MSGS = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_and_health(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME]
    assert requests.get(server + "/health").status_code == 200
    assert requests.get(server + "/ready").status_code == 200


def test_chat_greedy_stream_matches_plain(client):
    plain = client.chat.completions.create(model=NAME, messages=MSGS, max_tokens=16, temperature=0)
    assert plain.object == "chat.completion"
    choice = plain.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert plain.usage.completion_tokens <= 16
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    chunks = list(client.chat.completions.create(model=NAME, messages=MSGS, max_tokens=16,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_completions_n_stop_and_prompt_list(client):
    out = client.completions.create(model=NAME, prompt=["The sky is", "One, two,"], n=2,
                                    max_tokens=8, temperature=0)
    assert out.object == "text_completion"
    assert sorted(c.index for c in out.choices) == [0, 1, 2, 3]
    by_index = {c.index: c.text for c in out.choices}
    assert by_index[0] == by_index[1] and by_index[2] == by_index[3]  # greedy: choices agree
    first = by_index[2]
    assert first
    stop = first.strip().split()[0] if first.strip() else first
    stopped = client.completions.create(model=NAME, prompt="One, two,", max_tokens=8, temperature=0,
                                        stop=[stop])
    assert stop not in stopped.choices[0].text
    assert stopped.choices[0].finish_reason == "stop"


def test_tokenize_matches_cli(server):
    text = "Hello world! 123"
    r = requests.post(server + "/tokenize", json={"model": NAME, "prompt": text}, headers=AUTH)
    assert r.status_code == 200, r.text
    cli = json.loads(subprocess.run([BIN, "tokenize", "--model", NAME, "--json", text],
                                    capture_output=True, text=True, check=True).stdout)
    assert r.json()["tokens"] == cli["ids"] and r.json()["count"] == len(cli["ids"])
    d = requests.post(server + "/detokenize", json={"tokens": cli["ids"]}, headers=AUTH)
    assert d.json()["prompt"] == text


def test_errors_are_openai_objects(server, client):
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=NAME, messages=MSGS, temperature=7)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=MSGS, max_tokens=2)
    r = requests.post(server + "/v1/chat/completions", json={"messages": MSGS})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_metrics_count_requests(server, client):
    client.completions.create(model=NAME, prompt="Hi", max_tokens=2)
    # With --api-key, /metrics needs the key too (it names the model, load and request mix).
    assert requests.get(server + "/metrics").status_code == 401
    text = requests.get(server + "/metrics", headers={"Authorization": "Bearer " + KEY}).text
    assert re.search(r'tessera_http_requests_total\{route="/v1/completions",status="200"\} \d+', text)


# The engine reports how much of a prompt the prefix cache held, as OpenAI's
# usage.prompt_tokens_details.cached_tokens: nothing the first time, every full 16-token block of
# the prompt the second time.
def test_usage_reports_cached_prompt_tokens(client):
    msgs = [{"role": "system", "content": "You answer in one word. " * 12},
            {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=2, temperature=0)
    again = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=2, temperature=0)
    assert first.usage.prompt_tokens == again.usage.prompt_tokens > 32
    assert again.usage.prompt_tokens_details.cached_tokens == \
        (first.usage.prompt_tokens - 1) // 16 * 16
    assert first.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens_details.cached_tokens
