"""The tessera command line on the default model: tokenize, template (against Python jinja2),
generate (streaming text, --json, seeds, --json-schema and --grammar), chat over a pipe, and clear errors for bad input."""

import json
import re
import os
import subprocess

import gguf
import jinja2
import pytest

MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
BIN = os.environ.get("TESSERA_BIN", "build/tessera")
pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


def run(*args, input=None, ok=True):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, input=input, timeout=300)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def test_tokenize_json():
    out = json.loads(run("tokenize", "--model", "smollm2-135m-instruct", "--json", "Hello world! 123").stdout)
    assert out == {"ids": [19556, 905, 17, 216, 33, 34, 35]}


def test_template_matches_jinja2(tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(msgs))
    ours = run("template", "--model", MODEL, "--messages", str(path)).stdout
    src = gguf.GGUFReader(MODEL).fields["tokenizer.chat_template"].contents()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    theirs = env.from_string(src).render(messages=msgs, add_generation_prompt=True)
    assert ours == theirs
    assert ours.endswith("<|im_start|>assistant\n")


def test_generate_json_is_consistent_and_seeded():
    args = ["generate", "--model", MODEL, "--chat", "--prompt", "Write a short poem about the sea.",
            "--max-tokens", "24", "--temperature", "0.9", "--seed", "7", "--json"]
    a, b = json.loads(run(*args).stdout), json.loads(run(*args).stdout)
    assert a == b  # same seed, same output
    assert len(a["token_ids"]) <= 24 and a["finish_reason"] in ("stop", "length")
    c = json.loads(run(*args[:-3], "--seed", "8", "--json").stdout)
    assert c["token_ids"] != a["token_ids"]
    # Streaming text equals the JSON text.
    streamed = run(*args[:-1]).stdout
    assert streamed == a["text"] + "\n"


def test_generate_json_schema_and_grammar_files(tmp_path):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                               "temp_c": {"type": "integer"}},
              "required": ["city", "temp_c"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    for seed in ("1", "2", "3"):
        out = json.loads(run("generate", "--model", MODEL, "--prompt", "Weather in Paris as JSON:",
                             "--json-schema", str(tmp_path / "s.json"), "--temperature", "1",
                             "--seed", seed, "--max-tokens", "60", "--json").stdout)
        assert out["finish_reason"] == "stop", out
        doc = json.loads(out["text"])
        assert set(doc) == {"city", "temp_c"} and isinstance(doc["temp_c"], int), doc
    (tmp_path / "g.gbnf").write_text('root ::= "Answer: " ("yes" | "no")\n')
    out = run("generate", "--model", MODEL, "--prompt", "Is water wet?", "--grammar",
              str(tmp_path / "g.gbnf"), "--max-tokens", "10")
    assert out.stdout in ("Answer: yes\n", "Answer: no\n")
    (tmp_path / "bad.json").write_text('{"type": "object", "minProperties": 1}')
    bad = run("generate", "--model", MODEL, "--prompt", "x", "--json-schema",
              str(tmp_path / "bad.json"), ok=False)
    assert bad.returncode != 0 and "'minProperties'" in bad.stderr


def test_greedy_answer_is_coherent():
    out = run("generate", "--model", MODEL, "--chat", "--prompt",
              "What is the capital of France? Answer in one sentence.", "--max-tokens", "32")
    assert "Paris" in out.stdout
    assert "decode:" in out.stderr and "tok/s" in out.stderr


def test_chat_over_a_pipe():
    out = run("chat", "--model", MODEL, "--max-tokens", "16", input="Say hello.\n\n")
    assert out.stdout.startswith("> ") and len(out.stdout) > 4


# chat runs through the engine: the second turn resends the conversation and the prefix cache
# holds the first turn's full blocks, so only the rest is prefilled.
def test_chat_turns_reuse_the_prefix_cache():
    out = run("chat", "--model", MODEL, "--max-tokens", "8", "--system", "You are terse. " * 8,
              input="Say hello.\nSay goodbye.\n\n")
    cached = [int(c) for c in re.findall(r"\[prefill: \d+ tokens \(\+(\d+) cached\)", out.stderr)]
    assert len(cached) == 2, out.stderr
    assert cached[0] == 0 and cached[1] >= 16, out.stderr
    assert out.stdout.count("> ") == 3


# Exit code 1: a runtime error; 2: a usage error (unknown option, bad or out-of-range value).
@pytest.mark.parametrize("args,needle,code", [
    (["generate", "--model", "no-such-model", "--prompt", "x"], "no-such-model", 1),
    (["generate", "--model", MODEL, "--prompt", "x", "--top-p", "0"], "top_p", 1),
    (["generate", "--model", MODEL, "--prompt", "x", "--bogus"], "unknown option --bogus", 2),
    (["generate", "--model", MODEL, "--prompt-ids", "999999"], "999999", 1),
    (["tokenize", "--model", "/etc/hostname", "x"], "/etc/hostname", 1),
])
def test_bad_input_is_a_clear_error(args, needle, code):
    out = run(*args, ok=False)
    assert out.returncode == code
    assert needle in out.stderr


def test_models_pull_checks_the_cached_file_with_sha256(tmp_path):
    """A cached copy whose SHA-256 (OpenSSL's) matches the registry is used as is; one that was
    never pulled is reported by `models path` with the hint to pull it."""
    import hashlib
    import shutil
    shutil.copy(MODEL, tmp_path / os.path.basename(MODEL))
    env = dict(os.environ, TESSERA_MODEL_DIR=str(tmp_path))
    out = subprocess.run([BIN, "models", "pull", "smollm2-135m-instruct"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / os.path.basename(MODEL))
    assert "downloading" not in out.stderr  # the digest matched: nothing fetched
    assert hashlib.sha256(open(MODEL, "rb").read()).hexdigest() in open(
        os.path.join(os.path.dirname(__file__), "..", "..", "src", "cli", "model_registry.cpp")).read()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([BIN, "models", "path", "smollm2-135m-instruct"], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, TESSERA_MODEL_DIR=str(empty)))
    assert out.returncode == 1 and "models pull" in out.stderr, out.stderr
