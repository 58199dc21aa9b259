"""Starts `tessera serve` for the integration tests (and benchmarks/compare_serving.py) and waits
for its READY line (and its GRPC line when a gRPC port is asked for); runs `tessera generate`
greedily on token ids for the tests that read its log and logprobs."""

import json
import os
import subprocess
import time

BIN = os.environ.get("TESSERA_BIN", "build/tessera")
MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def generate_json(prompt_ids, max_tokens, *extra):
    """`tessera generate` of `max_tokens` greedy tokens after the comma-separated `prompt_ids`, one
    thread, logprobs on, plus EXTRA flags; returns (its stderr, its JSON result). Asserts it exits 0."""
    out = subprocess.run([BIN, "generate", "--prompt-ids", prompt_ids, "--max-tokens",
                          str(max_tokens), "--temperature", "0", "--ignore-eos", "--logprobs", "1",
                          "--json", "--threads", "1", *extra], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr, json.loads(out.stdout.strip().splitlines()[-1])


def launch(args, binary=None, timeout=120, stderr=subprocess.DEVNULL, env=None):
    """`binary serve ARGS`; returns (proc, http_url, grpc_addr or None) once it printed READY (and
    GRPC, when ARGS has --grpc-port). Kills it and raises when it does not start in time."""
    proc = subprocess.Popen([binary or BIN, "serve", *args], stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=env)
    want_grpc = "--grpc-port" in args
    http = grpc_addr = None
    deadline = time.time() + timeout
    while time.time() < deadline and not (http and (grpc_addr or not want_grpc)):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            http = line.split()[1]
        if line.startswith("GRPC "):
            grpc_addr = line.split()[1]
    if http and (grpc_addr or not want_grpc):
        return proc, http, grpc_addr
    proc.kill()
    raise RuntimeError("tessera serve did not start")


def start_server(*extra, timeout=120, stderr=subprocess.DEVNULL, env=None):
    proc, http, _ = launch(["--model", "smollm2-135m-instruct", "--http-port", "0", *extra],
                           timeout=timeout, stderr=stderr, env=env)
    return proc, http


def grpc_stubs(out_dir):
    """Compiles proto/ into out_dir with grpc_tools and imports the Python stubs: returns
    (generate_pb2, tessera_pb2, tessera_pb2_grpc, health_pb2, health_pb2_grpc)."""
    import sys

    from grpc_tools import protoc

    root = os.environ.get("TESSERA_SOURCE_DIR", os.getcwd())
    protos = ["tessera/v1/generate.proto", "tessera/v1/tessera.proto"]
    assert protoc.main(["protoc", f"-I{root}/proto", f"--python_out={out_dir}",
                        f"--grpc_python_out={out_dir}"] + [f"{root}/proto/{p}" for p in protos]) == 0
    sys.path.insert(0, str(out_dir))
    from tessera.v1 import generate_pb2, tessera_pb2, tessera_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # the standard service's own stubs
    return generate_pb2, tessera_pb2, tessera_pb2_grpc, health_pb2, health_pb2_grpc
