"""Tool calling end to end through the official `openai` client. The default SmolLM2 model's chat
template has no tool format (so it refuses `tools` unless tool_choice is "none"); the calls are
tested on a tiny random Qwen2-architecture model written here with the Qwen2.5 chat template (a
Hermes-style `<tool_call>` format). Its output is noise, which is the point for "required" and a
named function: the grammar must still force a call that parses and whose arguments validate
against the function's schema (`jsonschema`), at temperature 1, streaming and not. "none" gives
no tool_calls, and a conversation carrying tool_calls and tool results renders and is answered."""

import json
import os
import sys

import jsonschema
import openai
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import MODEL, grpc_stubs, launch, start_server  # noqa: E402
from tiny_models import CORPUS, TinySpec  # noqa: E402

SRC = os.environ.get("TESSERA_SOURCE_DIR", os.getcwd())
N_REQUESTS = int(os.environ.get("TESSERA_TOOL_N", "12"))

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12},
                           "unit": {"enum": ["celsius", "fahrenheit"]},
                           "days": {"type": "integer"}},
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object",
                       "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}},
                       "required": ["zone"], "additionalProperties": False},
    },
}
TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def write_tool_model(directory):
    """A tiny random qwen2 model whose tokenizer has the ChatML control tokens and whose chat
    template is Qwen2.5's (tools in the system turn, <tool_call> JSON, <tool_response>)."""
    spec = TinySpec(arch="qwen2", vocab=300)
    spec.write_hf(directory)
    # The Qwen2.5 system turn with two tools is ~1k tokens of this small vocabulary.
    config_path = os.path.join(directory, "config.json")
    config = json.load(open(config_path))
    config["max_position_embeddings"] = 4096
    json.dump(config, open(config_path, "w"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = CORPUS + ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                       '</tool_call>'] * 20
    tok.train_from_iterator(corpus, trainer)
    assert tok.get_vocab_size() <= 300
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(SRC, "tests/data/templates/qwen2.5.jinja")) as f:
        template = f.read()
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False,
                   "chat_template": template}, f)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("tool_model")
    write_tool_model(str(d))
    proc, url, grpc_addr = launch(["--model", str(d), "--http-port", "0", "--grpc-port", "0",
                                   "--no-warmup", "--kv-cache-mb", "32"])
    yield url, grpc_addr
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="none", max_retries=0, timeout=120)


def served_name(client):
    return client.models.list().data[0].id


def check_calls(message, allowed):
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function"
        assert call.id.startswith("call_")
        assert call.function.name in allowed
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_always_yields_valid_calls(client):
    model = served_name(client)
    for seed in range(N_REQUESTS):
        r = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, tool_choice="required", temperature=1.0,
            seed=seed, max_tokens=600, parallel_tool_calls=seed % 2 == 0)
        c = r.choices[0]
        check_calls(c.message, {"get_weather", "get_time"})
        if seed % 2:
            assert c.finish_reason == "tool_calls", c
            assert len(c.message.tool_calls) == 1
        else:
            # With parallel calls a noise model may go on calling until max_tokens cuts one;
            # every call it completed stands.
            assert c.finish_reason in ("tool_calls", "length"), c


def test_named_function_is_the_one_called(client):
    model = served_name(client)
    for seed in range(4):
        r = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, temperature=1.0, seed=100 + seed,
            max_tokens=600, parallel_tool_calls=False,
            tool_choice={"type": "function", "function": {"name": "get_time"}})
        c = r.choices[0]
        assert c.finish_reason == "tool_calls"
        check_calls(c.message, {"get_time"})
        assert len(c.message.tool_calls) == 1


def test_streamed_required_calls(client):
    model = served_name(client)
    for seed in range(4):
        stream = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, tool_choice="required", temperature=1.0,
            seed=200 + seed, max_tokens=600, parallel_tool_calls=False, stream=True)
        calls, finishes = {}, []
        for chunk in stream:
            if not chunk.choices:
                continue
            ch = chunk.choices[0]
            for d in ch.delta.tool_calls or []:
                if d.id is not None:  # the opening delta: id, type, name and empty arguments
                    assert d.index not in calls
                    assert d.type == "function" and d.function.arguments == ""
                    calls[d.index] = {"name": d.function.name, "arguments": ""}
                else:
                    calls[d.index]["arguments"] += d.function.arguments
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
        assert finishes == ["tool_calls"]
        assert list(calls) == [0]
        jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])


def test_none_gives_no_tool_calls(client):
    model = served_name(client)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="none",
                                       max_tokens=16, temperature=1.0, seed=3)
    c = r.choices[0]
    assert not c.message.tool_calls
    assert isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")


def test_auto_answers_with_text_or_calls(client):
    # A random model rarely writes a call on its own; whatever it writes is either a call that
    # parses or content, never an error.
    model = served_name(client)
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, max_tokens=24,
                                       temperature=1.0, seed=5)
    c = r.choices[0]
    assert c.message.tool_calls or isinstance(c.message.content, str)


def test_conversation_with_tool_results(client):
    model = served_name(client)
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "get_weather",
                          "arguments": json.dumps({"city": "Paris", "unit": "celsius", "days": 1})}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny, 21 C"},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=8,
                                       temperature=0.0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # The whole conversation is in the prompt: tools, the call (as a mapping) and the result.
    assert r.usage.prompt_tokens > 100
    # And a forced call after a tool result is again a valid call.
    r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=600,
                                       tool_choice="required", parallel_tool_calls=False, seed=9)
    check_calls(r.choices[0].message, {"get_weather", "get_time"})


def test_bad_tools_are_400_naming_the_field(client):
    model = served_name(client)
    bad = [({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools"),
           ({"tools": [{"type": "function", "function": {
               "name": "f", "parameters": {"type": "object", "patternProperties": {}}}}]}, "tools"),
           ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
           ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice"),
           ({"tools": TOOLS, "tool_choice": "required",
             "response_format": {"type": "json_object"}}, "tool_choice")]
    for extra, param in bad:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model, messages=ASK, max_tokens=4, **extra)
        assert e.value.body["param"] == param, (extra, e.value.body)


def test_grpc_chat_returns_parsed_calls(served, tmp_path):
    import grpc
    generate_pb2, _, tessera_pb2_grpc, _, _ = grpc_stubs(tmp_path)
    stub = tessera_pb2_grpc.TesseraServiceStub(grpc.insecure_channel(served[1]))

    def chat(**fields):
        req = generate_pb2.ChatRequest(
            messages=[generate_pb2.ChatMessage(role="user", content=ASK[0]["content"])],
            tools_json=json.dumps(TOOLS), stopping=generate_pb2.StoppingOptions(max_tokens=600),
            sampling=generate_pb2.SamplingOptions(temperature=1.0, seed=7), **fields)
        return list(stub.Chat(req, timeout=120))

    out = chat(tool_choice_json='{"type": "function", "function": {"name": "get_weather"}}',
               parallel_tool_calls=False)
    done = out[-1]
    assert done.WhichOneof("response") == "complete", done
    assert done.complete.finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS
    assert len(done.complete.tool_calls) == 1
    call = done.complete.tool_calls[0]
    assert call.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), SCHEMAS["get_weather"])
    # The chunks carry the raw text, which is the call in the template's format.
    raw = "".join(r.chunk.text for r in out if r.WhichOneof("response") == "chunk")
    assert raw.startswith("<tool_call>")
    # A bad tool_choice is INVALID_ARGUMENT naming the gRPC field.
    with pytest.raises(grpc.RpcError) as e:
        chat(tool_choice_json='"sometimes"')
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("tool_choice_json: "), e.value.details()


@pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")
def test_default_model_template_has_no_tool_format():
    proc, url = start_server("--kv-cache-mb", "32", "--no-warmup")
    try:
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="smollm2-135m-instruct", messages=ASK, tools=TOOLS,
                                      max_tokens=4)
        assert e.value.body["param"] == "tools"
        assert "tool-call format" in e.value.body["message"]
        r = c.chat.completions.create(model="smollm2-135m-instruct", messages=ASK, tools=TOOLS,
                                      tool_choice="none", max_tokens=4)
        assert r.choices[0].message.tool_calls is None
    finally:
        proc.terminate()
        proc.wait(timeout=60)
