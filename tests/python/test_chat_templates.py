"""Chat-template parity with Python jinja2 as Hugging Face transformers configures it.

jinja_make_fixtures.py renders the stored real chat templates (SmolLM2/ChatML, Llama 2, Llama 3.1
with tools, Mistral v0.3 with tools, Qwen2.5 with tools, Gemma, Phi-3) over a set of
conversations, plus small templates that pin interpreter semantics, and writes the expected
outputs (or errors); the C++ JinjaParity gtest replays every case through our interpreter and
must match byte for byte.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BINARY_DIR = Path(os.environ.get("TESSERA_BINARY_DIR", HERE.parents[1] / "build"))
GTEST = BINARY_DIR / "tests" / "tessera_tokenizer_tests"
TEMPLATES = HERE.parent / "data" / "templates"
DEFAULT_GGUF = Path.home() / ".cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def fixtures():
    out = BINARY_DIR / "jinja_fixtures"
    subprocess.run([sys.executable, str(HERE / "jinja_make_fixtures.py"), str(out)], check=True)
    return out


def test_fixtures_cover_the_families(fixtures):
    cases = json.loads((fixtures / "cases.json").read_text(encoding="utf-8"))
    families = {c["name"].split("/")[0] for c in cases if "expected" in c and "template_file" in c}
    assert families >= {"smollm2", "llama2", "llama3", "mistral", "qwen2.5", "gemma", "phi3"}
    # Tool calls and tool results actually render for the tool-capable families.
    for fam in ("llama3", "mistral", "qwen2.5"):
        ok = [c for c in cases if c["name"].startswith(f"{fam}/tool_calls/tools/") and "expected" in c]
        assert ok, fam
    assert any("expected_error" in c for c in cases)


def test_stored_smollm2_template_is_the_models():
    if not DEFAULT_GGUF.exists():
        pytest.skip("default model missing")
    import gguf

    reader = gguf.GGUFReader(str(DEFAULT_GGUF))
    field = reader.fields["tokenizer.chat_template"]
    from_model = bytes(field.parts[field.data[0]]).decode("utf-8")
    assert (TEMPLATES / "smollm2.jinja").read_text(encoding="utf-8") == from_model


def test_cpp_matches_jinja2(fixtures):
    if not GTEST.exists():
        pytest.skip(f"{GTEST} not built")
    env = dict(os.environ, TESSERA_JINJA_FIXTURES=str(fixtures))
    proc = subprocess.run([str(GTEST), "--gtest_filter=JinjaParity.*"], env=env,
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout[-20000:])
    print(proc.stderr[-5000:])
    assert proc.returncode == 0
    assert "[  PASSED  ]" in proc.stdout
    assert "SKIPPED" not in proc.stdout
