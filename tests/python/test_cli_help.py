"""The command line's help, version and usage errors (CLI11): every subcommand's --help exits 0
and lists its options with their defaults and ranges; a typo gets "did you mean" and exit 2; an
out-of-range value exits 2 naming the flag. Needs only the binary, no model."""

import os
import re
import subprocess

import pytest

BIN = os.environ.get("TESSERA_BIN", "build/tessera")

# A few known flags per subcommand; the help must list at least these.
KNOWN = {
    "serve": ["--model", "--config", "--host", "--http-port", "--grpc-port", "--api-key",
              "--tls-cert", "--tls-key", "--max-num-seqs", "--kv-cache-mb", "--backend",
              "--no-warmup", "--in-process-worker", "--drain-timeout", "--node-rank"],
    "generate": ["--model", "--prompt", "--prompt-ids", "--chat", "--json", "--max-tokens",
                 "--temperature", "--seed", "--logprobs", "--backend", "--config"],
    "chat": ["--model", "--system", "--max-tokens", "--backend", "--kv-cache-mb"],
    "tokenize": ["--model", "--json", "--no-special"],
    "template": ["--model", "--messages"],
    "logits": ["--model", "--ids", "--out", "--chunk", "--backend", "--threads"],
    "models": [],
    "plan": ["--model", "--gpus", "--gpu-memory", "--context", "--batch", "--dtype", "--json"],
    "bench": ["--base-url", "--model", "--request-rate", "--concurrency", "--num-requests",
              "--request-rates", "--concurrencies", "--plot", "--quiet"],
    "worker": ["--model", "--store", "--rank", "--tp", "--pp", "--backend", "--device"],
}


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)


def help_options(cmd):
    out = run(cmd, "--help")
    assert out.returncode == 0, out.stderr
    return out.stdout, set(re.findall(r"^\s+(?:-\w,)?(--[\w-]+)", out.stdout, re.M))


def test_top_level_help_lists_the_subcommands():
    out = run("--help")
    assert out.returncode == 0 and out.stderr == ""
    for cmd in KNOWN:
        if cmd != "worker":  # internal: hidden from the top-level help
            assert re.search(rf"^\s+{cmd}\s", out.stdout, re.M), cmd
    assert not re.search(r"^\s+worker\s", out.stdout, re.M)
    assert "2 usage error" in out.stdout


def test_version():
    out = run("--version")
    assert out.returncode == 0
    assert re.fullmatch(r"tessera \d+\.\d+\.\d+\n", out.stdout), out.stdout


def test_no_subcommand_is_a_usage_error():
    out = run()
    assert out.returncode == 2 and "subcommand" in out.stderr.lower()
    assert run("frobnicate").returncode == 2


@pytest.mark.parametrize("cmd", sorted(KNOWN))
def test_every_subcommand_help_lists_its_options(cmd):
    text, opts = help_options(cmd)
    assert "--help" in opts
    missing = [f for f in KNOWN[cmd] if f not in opts]
    assert not missing, (missing, text)
    # Every help line names its option once: no duplicate definitions.
    assert len(re.findall(r"^\s+--[\w-]+", text, re.M)) == len(opts - {"--help"}), text

def test_help_shows_types_defaults_and_ranges():
    text, _ = help_options("serve")
    assert re.search(r"--http-port INT:INT in \[0 - 65535\]=8000", text), text
    assert re.search(r"--backend TEXT:\{cpu,guarded,cuda\}=cpu", text), text
    text, _ = help_options("generate")
    assert re.search(r"--max-tokens INT:NONNEGATIVE=128", text), text
    text, _ = help_options("chat")
    assert re.search(r"--max-tokens INT:NONNEGATIVE=512", text), text


@pytest.mark.parametrize("args,suggestion", [
    (["generate", "--max-token", "5"], "--max-tokens"),
    (["serve", "--http-prot", "9000"], "--http-port"),
    (["plan", "--gpu", "8"], "--gpus"),
    (["bench", "--concurency", "4"], "--concurrency"),
])
def test_typo_gets_did_you_mean_and_exit_2(args, suggestion):
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert f"unknown option {args[1]}" in out.stderr
    assert f"did you mean {suggestion}?" in out.stderr
    assert out.stdout == ""


def test_far_off_option_gets_no_suggestion():
    out = run("generate", "--zzzzzzzzzzzz")
    assert out.returncode == 2 and "unknown option --zzzzzzzzzzzz" in out.stderr
    assert "did you mean" not in out.stderr


@pytest.mark.parametrize("args,flag", [
    (["serve", "--http-port", "70000"], "--http-port"),
    (["generate", "--kv-cache-mb", "0"], "--kv-cache-mb"),
    (["generate", "--backend", "tpu"], "--backend"),
    (["plan", "--gpus", "0"], "--gpus"),
    (["logits", "--ids", "1", "--out", "/dev/null", "--chunk", "0"], "--chunk"),
    (["generate", "--max-tokens", "lots"], "--max-tokens"),
])
def test_bad_value_exits_2_naming_the_flag(args, flag):
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert flag in out.stderr and "usage error" in out.stderr


def test_missing_required_option_exits_2():
    out = run("template")
    assert out.returncode == 2 and "--messages" in out.stderr


def test_docs_cli_md_is_the_binarys_help():
    """docs/cli.md holds every subcommand's --help as the binary prints it."""
    import importlib.util
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    spec = importlib.util.spec_from_file_location(
        "cli_help_doc", os.path.join(root, "scripts", "cli_help_doc.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    want = mod.document(BIN)
    have = open(os.path.join(root, "docs", "cli.md")).read()
    assert have == want, ("docs/cli.md is stale: python3 scripts/cli_help_doc.py build/tessera "
                          "> docs/cli.md")
    for cmd in KNOWN:
        if cmd != "worker":  # internal: started by the server, not documented for people
            assert f"## tessera {cmd}\n" in have, cmd
