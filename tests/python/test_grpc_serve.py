"""`tessera serve --grpc-port 0` on the default model, driven by a Python gRPC client whose stubs
are generated from proto/ at test time (grpcio-tools): Generate streams chunks then Complete,
Chat uses the model's template, Tokenize agrees with the HTTP /tokenize, Health reports SERVING;
Generate honours a structured-output constraint (JSON Schema, choice) and names a bad one."""

import json
import os

import grpc
import pytest
import requests

from serve_util import MODEL, grpc_stubs, launch

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    return grpc_stubs(tmp_path_factory.mktemp("pb"))


@pytest.fixture(scope="module")
def server():
    proc, http, grpc_addr = launch(["--model", "smollm2-135m-instruct", "--http-port", "0",
                                    "--grpc-port", "0", "--no-warmup", "--kv-cache-mb", "64"])
    yield http, grpc_addr
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def test_generate_chat_tokenize_health(stubs, server):
    generate_pb2, tessera_pb2, tessera_pb2_grpc, health_pb2, health_pb2_grpc = stubs
    http, addr = server
    channel = grpc.insecure_channel(addr)
    stub = tessera_pb2_grpc.TesseraServiceStub(channel)

    req = generate_pb2.GenerateRequest(text="The capital of France is",
                                       sampling=generate_pb2.SamplingOptions(temperature=0.0),
                                       stopping=generate_pb2.StoppingOptions(max_tokens=8, ignore_eos=True))
    chunks, complete = [], None
    for resp in stub.Generate(req, timeout=120):
        kind = resp.WhichOneof("response")
        assert kind != "error", resp.error.message
        if kind == "chunk":
            chunks.append(resp.chunk)
        else:
            complete = resp.complete
    assert complete.finish_reason == generate_pb2.FINISH_REASON_LENGTH
    assert sum(len(c.token_ids) for c in chunks) == 8 == complete.usage.completion_tokens
    text = "".join(c.text for c in chunks)
    assert "Paris" in text

    # The same prompt through HTTP greedy gives the same text.
    r = requests.post(http + "/v1/completions", json={"prompt": "The capital of France is",
                                                      "max_tokens": 8, "temperature": 0,
                                                      "ignore_eos": True}, timeout=120)
    assert r.json()["choices"][0]["text"] == text

    chat = generate_pb2.ChatRequest(messages=[generate_pb2.ChatMessage(role="user", content="Say hi.")],
                                    stopping=generate_pb2.StoppingOptions(max_tokens=8))
    kinds = [resp.WhichOneof("response") for resp in stub.Chat(chat, timeout=120)]
    assert kinds[-1] == "complete"

    toks = stub.Tokenize(tessera_pb2.TokenizeRequest(text="Hello world! 123"), timeout=30)
    assert list(toks.token_ids) == [19556, 905, 17, 216, 33, 34, 35]

    bad = generate_pb2.GenerateRequest(text="x", sampling=generate_pb2.SamplingOptions(top_p=5.0))
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(bad, timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_p" in e.value.details()

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_generate_under_a_constraint(stubs, server):
    generate_pb2, _, tessera_pb2_grpc, _, _ = stubs
    stub = tessera_pb2_grpc.TesseraServiceStub(grpc.insecure_channel(server[1]))

    def text_of(sampling, max_tokens=60):
        req = generate_pb2.GenerateRequest(text="Weather in Paris as JSON:", sampling=sampling,
                                           stopping=generate_pb2.StoppingOptions(max_tokens=max_tokens))
        out, finish = [], None
        for resp in stub.Generate(req, timeout=120):
            assert resp.WhichOneof("response") != "error", resp.error.message
            if resp.WhichOneof("response") == "chunk":
                out.append(resp.chunk.text)
            else:
                finish = resp.complete.finish_reason
        return "".join(out), finish

    schema = ('{"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, '
              '"temp": {"type": "integer"}}, "required": ["city", "temp"], '
              '"additionalProperties": false}')
    for seed in range(3):
        text, finish = text_of(generate_pb2.SamplingOptions(temperature=1.0, seed=seed,
                                                            json_schema=schema))
        assert finish == generate_pb2.FINISH_REASON_STOP, text
        doc = json.loads(text)
        assert set(doc) == {"city", "temp"} and isinstance(doc["temp"], int), doc
    text, _ = text_of(generate_pb2.SamplingOptions(
        choice=generate_pb2.ChoiceList(choices=["sunny", "rainy"])), 5)
    assert text in ("sunny", "rainy")
    bad = generate_pb2.GenerateRequest(text="x", sampling=generate_pb2.SamplingOptions(
        json_schema='{"type": "string", "format": "date"}'))
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(bad, timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.json_schema" in e.value.details() and "'format'" in e.value.details()
