"""Starts `tessera serve` for the integration tests and waits for its READY line."""

import os
import subprocess
import time

BIN = os.environ.get("TESSERA_BIN", "build/tessera")
MODEL = os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def start_server(*extra, timeout=120, stderr=subprocess.DEVNULL, env=None):
    proc = subprocess.Popen([BIN, "serve", "--model", "smollm2-135m-instruct", "--http-port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            return proc, line.split()[1]
    proc.kill()
    raise RuntimeError("tessera serve did not start")
