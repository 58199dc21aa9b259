"""Expert parallelism with data-parallel attention (`parallel.expert_attention: data`, the
default) behind the real server, on tiny generated MoE models (tiny_moe.py): one request of
several prompts (so every EP rank gets sequences, and in decode some steps leave a rank without
any) must give, for each prompt, the numpy reference's greedy tokens and log-probabilities
(atol 2e-4: the ranks' partial expert outputs are summed in rank order, an F32 rounding
difference of ~1e-6), for EP=2, EP=4, EP=2 x PP=2 and EP=2 x TP=2 (and the replicated form
beside them, alone and with TP=2).
Every routed token is counted once, by its expert's owner; the tokens cross the EP group by
all_to_all_v (measured in tessera:comm_bytes_total), never by an all-reduce, and a rank's
dispatch sends no more rows than tokens x (E - 1)."""

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import grpc
import requests

sys.path.insert(0, os.path.dirname(__file__))
from serve_util import grpc_stubs, launch  # noqa: E402
from test_tiny_moe import make, expert_counts, log_softmax  # noqa: E402

ATOL = 2e-4
N = 5


def comm_bytes(url):
    """{(group, op): bytes} from /metrics."""
    out = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        m = re.match(r'tessera:comm_bytes_total\{group="(\w+)",op="(\w+)"\} ([0-9.e+]+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def reference(spec, prompt):
    """Greedy tokens and their log-probabilities from the numpy reference."""
    ids, lps = list(prompt), []
    for _ in range(N):
        lp = log_softmax(spec.logits(ids))[-1]
        ids.append(int(lp.argmax()))
        lps.append(float(lp[ids[-1]]))
    return ids[len(prompt):], np.array(lps)


@pytest.mark.parametrize("style", ["mixtral", "qwen2_moe"])
def test_data_parallel_expert_layouts_match_the_reference(tmp_path, style):
    kw = {"norm_topk": True} if style == "qwen2_moe" else {}
    spec = make(tmp_path, style, layers=2, experts=4, top_k=2, **kw)
    model = str(tmp_path / "hf")
    rng = np.random.default_rng()
    prompts = [[int(t) for t in rng.integers(0, spec.vocab, size=int(rng.integers(2, 9)))]
               for _ in range(5)]
    want = [reference(spec, p) for p in prompts]
    (tmp_path / "pb").mkdir()
    generate_pb2, _, tessera_pb2_grpc, _, _ = grpc_stubs(tmp_path / "pb")

    def generate(stub, prompt):
        req = generate_pb2.GenerateRequest(
            tokens=generate_pb2.TokenIds(ids=prompt),
            sampling=generate_pb2.SamplingOptions(temperature=0.0),
            stopping=generate_pb2.StoppingOptions(max_tokens=N, ignore_eos=True),
            output=generate_pb2.OutputOptions(logprobs=True))
        ids, lps = [], []
        for resp in stub.Generate(req, timeout=120):
            kind = resp.WhichOneof("response")
            assert kind != "error", resp.error.message
            if kind == "chunk":
                ids += list(resp.chunk.token_ids)
                lps += [lp.logprob for lp in resp.chunk.logprobs]
        return ids, np.array(lps)

    fed = sum(len(p) for p in prompts) + (N - 1) * len(prompts)  # the last token is not fed
    for expert, pipeline, tensor, attention in [(2, 1, 1, "data"), (4, 1, 1, "data"),
                                                (2, 2, 1, "data"), (2, 1, 2, "data"),
                                                (2, 1, 1, "replicated"), (2, 1, 2, "replicated")]:
        cfg = tmp_path / f"e{expert}p{pipeline}t{tensor}{attention}.yaml"
        cfg.write_text("\n".join([
            f"model: {{path: '{model}'}}", "backend: cpu",
            f"parallel: {{expert: {expert}, pipeline: {pipeline}, tensor: {tensor}, "
            f"expert_attention: {attention}}}",
            # f32 cache: ATOL is fp32 reordering error; the default f16 cache moves ~1e-3.
            "scheduler: {kv_cache_mb: 4, kv_cache_dtype: f32}", "threads_per_rank: 1"]) + "\n")
        proc, url, grpc_addr = launch(["--config", str(cfg), "--http-port", "0", "--grpc-port",
                                       "0", "--no-warmup"])
        where = (style, expert, pipeline, tensor, attention)
        try:
            stub = tessera_pb2_grpc.TesseraServiceStub(grpc.insecure_channel(grpc_addr))
            # All at once, so the steps batch them across the ranks.
            with ThreadPoolExecutor(len(prompts)) as pool:
                got = list(pool.map(lambda p: generate(stub, p), prompts))
            for (ids, lps), (tokens, want_lps) in zip(got, want):
                assert ids == tokens, (where, ids, tokens)
                assert np.abs(lps - want_lps).max() < ATOL, (where, lps, want_lps)
            counts = expert_counts(url)
            for layer in range(spec.layers):
                routed = sum(counts.get((layer, e), 0) for e in range(spec.experts))
                assert routed == spec.top_k * fed, (where, layer, routed, fed)
            sent = comm_bytes(url)
            if attention == "data":
                a2a = sent.get(("ep", "all_to_all_v"), 0)
                assert a2a > 0 and ("ep", "all_reduce_sum") not in sent, (where, sent)
                # Dispatch and combine: a token's row (hidden floats, plus 2k routing floats on
                # the way out) goes to each other rank holding one of its experts, at most E - 1.
                # Each TP rank of an EP group sends its own copy.
                row = 4 * (spec.hidden + (spec.hidden + 2 * spec.top_k))
                assert a2a <= spec.layers * fed * min(spec.top_k, expert - 1) * row * tensor, \
                    (where, sent)
            else:
                assert sent.get(("ep", "all_reduce_sum"), 0) > 0, (where, sent)
                assert ("ep", "all_to_all_v") not in sent, (where, sent)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
