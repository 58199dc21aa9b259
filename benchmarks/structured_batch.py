"""Slowdown of constrained requests sharing batches with unconstrained ones, end to end: serves
the default model, then runs 8 concurrent chat requests twice, all unconstrained, then 4 under a
JSON Schema (response_format) beside 4 unconstrained. Prints ms per output token for each kind
(usage.completion_tokens / wall time of that request). Run from the repository root after a
build: .venv/bin/python benchmarks/structured_batch.py"""

import concurrent.futures
import os
import sys
import time

import openai

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from serve_util import start_server  # noqa: E402

SCHEMA = {"type": "object", "properties": {
    "story": {"type": "string", "maxLength": 400},
    "words": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 20}},
    "required": ["story", "words"], "additionalProperties": False}


def one(client, constrained, seed):
    kw = {}
    if constrained:
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    else:
        kw["extra_body"] = {"ignore_eos": True}
    t0 = time.time()
    r = client.chat.completions.create(
        model="smollm2-135m-instruct", temperature=1.0, seed=seed, max_tokens=96,
        messages=[{"role": "user", "content": "Tell me a long story about a lighthouse."}], **kw)
    return constrained, r.usage.completion_tokens, time.time() - t0


def run(client, kinds):
    with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
        res = list(pool.map(lambda a: one(client, *a), [(k, i) for i, k in enumerate(kinds)]))
    out = {}
    for c, toks, secs in res:
        out.setdefault(c, []).append(1000.0 * secs / max(toks, 1))
    return {("constrained" if c else "free"): sum(v) / len(v) for c, v in out.items()}


def main():
    proc, url = start_server("--kv-cache-mb", "128", "--no-warmup", "--max-num-seqs", "8")
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=300)
        run(client, [False] * 2)  # warm up
        for rep in range(2):
            print("all free      ", run(client, [False] * 8))
            print("4 json + 4 free", run(client, [True] * 4 + [False] * 4))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
