"""Tokenizer parity with the Hugging Face `tokenizers` package.

tok_make_fixtures.py builds HF tokenizers (the default model's vocabulary from its GGUF, plus tiny
Llama-3, Qwen2 and SentencePiece-style ones trained on the spot), saves their tokenizer.json files
and the ids HF gives for a corpus of hard and random strings; the C++ HfParity gtests then check
that our Tokenizer (from tokenizer.json, and from the GGUF fields) gives the same ids and text.
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
DEFAULT_GGUF = Path.home() / ".cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def fixtures():
    out = BINARY_DIR / "tok_fixtures"
    subprocess.run([sys.executable, str(HERE / "tok_make_fixtures.py"), str(out)], check=True)
    return out


def test_reference_check_vectors(fixtures):
    """The HF reference itself reproduces the known SmolLM2 ids (guards the fixture builder)."""
    if not DEFAULT_GGUF.exists():
        pytest.skip("default model missing")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(fixtures / "smollm" / "tokenizer.json"))
    assert tok.encode("Hello world! 123").ids == [19556, 905, 17, 216, 33, 34, 35]
    assert tok.encode("\n").ids == [198]
    assert tok.encode("<|im_start|>user\nhi<|im_end|>").ids == [1, 4093, 198, 6004, 2]


def test_cpp_tokenizer_matches_hf(fixtures):
    if not GTEST.exists():
        pytest.skip(f"{GTEST} not built")
    manifest = json.loads((fixtures / "manifest.json").read_text())
    assert len(manifest["fixtures"]) >= 3
    env = dict(os.environ, TESSERA_TOK_FIXTURES=str(fixtures))
    proc = subprocess.run([str(GTEST), "--gtest_filter=HfParity.*:DefaultModel.*"], env=env,
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout[-20000:])
    print(proc.stderr[-5000:])
    assert proc.returncode == 0, f"HfParity failed (random corpus seed {manifest['seed']})"
    assert "[  PASSED  ]" in proc.stdout
    if DEFAULT_GGUF.exists():
        assert "SKIPPED" not in proc.stdout
