"""Structured outputs end to end: `tessera serve` on the default model through the official
OpenAI client. response_format json_schema (nested objects, arrays, enums, $ref) must give output
that parses and validates with the `jsonschema` package for random prompts at temperature 1;
json_object always parses; guided_regex and guided_choice are honoured; constrained and
unconstrained requests run side by side; a bad schema is a 400 naming the field and keyword."""

import concurrent.futures
import json
import os
import random
import re
import time

import jsonschema
import openai
import pytest

from serve_util import MODEL, start_server

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")
NAME = "smollm2-135m-instruct"
N_PROMPTS = int(os.environ.get("TESSERA_STRUCTURED_N", "50"))

SCHEMA = {
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20},
                           "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "user", "guest"]},
        "home": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1,
                 "maxItems": 3},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "home", "tags", "active"],
    "additionalProperties": False,
}

TOPICS = ["a pirate", "a nurse", "a chef in Paris", "a student", "a robot", "an old farmer",
          "a pilot", "a child", "a wizard", "a banker", "a poet", "a cat lover"]


@pytest.fixture(scope="module")
def client():
    proc, url = start_server("--kv-cache-mb", "64", "--no-warmup", "--max-num-seqs", "16")
    yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    proc.terminate()
    proc.wait(timeout=60)


def schema_request(client, prompt, seed):
    r = client.chat.completions.create(
        model=NAME, temperature=1.0, seed=seed, max_tokens=200,
        messages=[{"role": "user", "content": f"Describe {prompt} as a JSON user record."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "user", "schema": SCHEMA, "strict": True}})
    return r.choices[0]


def test_json_schema_outputs_validate(client):
    rng = random.Random(17)
    jobs = [(rng.choice(TOPICS) + f" #{i}", rng.randrange(1 << 30)) for i in range(N_PROMPTS)]
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        choices = list(pool.map(lambda j: schema_request(client, *j), jobs))
    elapsed = time.time() - start
    for c in choices:
        assert c.finish_reason == "stop", c.message.content  # the grammar ended it, not max_tokens
        doc = json.loads(c.message.content)
        jsonschema.validate(doc, SCHEMA)
    print(f"{N_PROMPTS} json_schema requests in {elapsed:.1f} s")


def test_json_object_always_parses(client):
    # Any object may be long and a 135M model can loop inside a list, so an output may run into
    # max_tokens (then it is a cut JSON prefix); every finished one must parse as an object.
    finished = 0
    for seed in range(6):
        r = client.chat.completions.create(
            model=NAME, temperature=0.7, seed=seed, max_tokens=300,
            messages=[{"role": "user",
                       "content": "Give me a short JSON object with a city and its temperature."}],
            response_format={"type": "json_object"})
        c = r.choices[0]
        if c.finish_reason == "stop":
            finished += 1
            assert isinstance(json.loads(c.message.content), dict), c.message.content
        else:
            assert c.message.content.lstrip().startswith("{"), c.message.content
    assert finished >= 4, f"only {finished} of 6 json_object outputs finished"


def test_regex_and_choice_on_both_endpoints(client):
    for seed in range(6):
        r = client.completions.create(model=NAME, prompt="My phone number is", temperature=1.0,
                                      seed=seed, max_tokens=30,
                                      extra_body={"guided_regex": r"\(\d{3}\) \d{3}-\d{4}"})
        assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", r.choices[0].text), r.choices[0].text
        r = client.chat.completions.create(
            model=NAME, temperature=1.0, seed=seed, max_tokens=10,
            messages=[{"role": "user", "content": "Is the sky green?"}],
            extra_body={"guided_choice": ["yes", "no", "not sure"]})
        assert r.choices[0].message.content in ("yes", "no", "not sure")


def test_constrained_and_free_requests_share_steps(client):
    def free(seed):
        return client.completions.create(model=NAME, prompt="Once upon a time", temperature=1.0,
                                         seed=seed, max_tokens=40).choices[0]

    def grammar(seed):
        return client.completions.create(
            model=NAME, prompt="Count:", temperature=1.0, seed=seed, max_tokens=40,
            extra_body={"guided_grammar": 'root ::= " " num ("," " "? num){2,5}\nnum ::= [1-9] [0-9]?'}
        ).choices[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        frees = [pool.submit(free, s) for s in range(4)]
        grammars = [pool.submit(grammar, s) for s in range(4)]
        for f in frees:
            assert f.result().finish_reason == "length"  # unconstrained: free to run on
        for g in grammars:
            assert re.fullmatch(r" [1-9][0-9]?(, ?[1-9][0-9]?){2,5}", g.result().text), g.result().text


def test_bad_constraints_are_400_naming_field_and_keyword(client):
    cases = [
        ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}}}},
         "response_format", "minimum"),
        ({"guided_json": {"type": "string", "format": "email"}}, "guided_json", "format"),
        ({"guided_regex": "(?=lookahead)"}, "guided_regex", "lookaround"),
        ({"guided_grammar": "root ::= missing"}, "guided_grammar", "missing"),
        ({"guided_choice": [], "guided_regex": "a"}, "guided_choice", "cannot be combined"),
    ]
    for extra, param, word in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=NAME, max_tokens=5, extra_body=extra,
                                           messages=[{"role": "user", "content": "hi"}])
        err = e.value.body
        assert err["param"] == param, err
        assert word in err["message"], err
