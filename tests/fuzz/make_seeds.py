"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*). Run with the
test venv (gguf, numpy, grpcio-tools): .venv/bin/python tests/fuzz/make_seeds.py. The seeds are
small and checked in; regression inputs of fixed crashes sit beside them as crash-*."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def gguf_seed():
    import gguf
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "<s>"])
        w.add_tensor("token_embd.weight", np.arange(24, dtype=np.float32).reshape(3, 8))
        w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return open(path, "rb").read()


def safetensors_seed():
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]},
              "__metadata__": {"format": "pt"}}
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + np.arange(4, dtype=np.float32).tobytes() + \
        np.ones(2, dtype=np.float16).tobytes()


def tokenizer_json():
    vocab = {c: i for i, c in enumerate(["h", "e", "l", "o", "Ġ", "w", "he", "ll", "hell", "hello"])}
    return json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": 10, "content": "<|im_end|>", "special": True, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll", "hell o"],
                  "byte_fallback": False}})


def grpc_seeds():
    with tempfile.TemporaryDirectory() as tmp:
        from grpc_tools import protoc
        assert protoc.main(["protoc", f"-I{ROOT}/proto", f"--python_out={tmp}",
                            f"{ROOT}/proto/tessera/v1/generate.proto"]) == 0
        sys.path.insert(0, tmp)
        from tessera.v1 import generate_pb2 as pb
        chat = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="hello<|im_end|>")],
                              sampling=pb.SamplingOptions(temperature=0.5, top_k=3),
                              stopping=pb.StoppingOptions(max_tokens=4, stop=["x"]),
                              tools_json='[{"type":"function","function":{"name":"f"}}]')
        gen = pb.GenerateRequest(text="hello world", stopping=pb.StoppingOptions(max_tokens=2),
                                 output=pb.OutputOptions(top_logprobs=2))
        toks = pb.GenerateRequest(tokens=pb.TokenIds(ids=[1, 2, 3]))
        return {"chat": b"\x01" + chat.SerializeToString(), "text": b"\x00" + gen.SerializeToString(),
                "tokens": b"\x00" + toks.SerializeToString()}


def main():
    put("gguf", "tiny", gguf_seed())
    put("safetensors", "tiny", safetensors_seed())
    put("hf_tokenizer", "bpe", tokenizer_json())
    for i, t in enumerate(["hello world", "h\u00e9llo <|im_end|> w\u00f6rld\n\t 123",
                           "<|im_start|>user\nhi<|im_end|>", "\xff\xfe invalid"]):
        put("tokenizer_roundtrip", str(i), t.encode("utf-8", "surrogateescape"))
    for name in ["smollm2", "llama3", "qwen2.5", "mistral-v0.3"]:
        put("jinja", name, open(os.path.join(ROOT, "tests", "data", "templates", name + ".jinja"),
                                "rb").read())
    chat = {"model": "m", "messages": [{"role": "system", "content": "s"},
                                       {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 4, "temperature": 0.7, "stop": ["x"], "logit_bias": {"5": 1},
            "n": 2, "logprobs": True, "top_logprobs": 2, "stream": True,
            "stream_options": {"include_usage": True}}
    put("openai_request", "chat", b"\x01" + json.dumps(chat).encode())
    put("openai_request", "completions", b"\x00" + json.dumps(
        {"prompt": ["hello", "world"], "max_tokens": 3, "n": 2, "logprobs": 1}).encode())
    put("openai_request", "token-ids", b"\x00" + json.dumps({"prompt": [[1, 2], [3]]}).encode())
    for name, data in grpc_seeds().items():
        put("grpc_request", name, data)
    for name in ["cpu", "cpu-tp3-pp2", "gpu-tp8-pp2"]:
        put("yaml_topology", name, open(os.path.join(ROOT, "configs", name + ".yaml"), "rb").read())
    # Store requests: u8 op | u32 key_len | u64 value_len | key | value.
    def req(op, key, value=b""):
        return struct.pack("<BIQ", op, len(key), len(value)) + key + value
    put("rendezvous_store", "set-get", req(1, b"k", b"v") + req(2, b"k", struct.pack("<q", 10)))
    put("rendezvous_store", "add-has", req(3, b"c", struct.pack("<q", 5)) + req(4, b"c"))
    # Worker frames: a few headers; the fuzzer grows real payloads from them.
    put("wire_frames", "empty", b"")
    put("wire_frames", "plan-header", b"\x03" + struct.pack("<I", 8) + bytes(8))
    put("wire_frames", "hello-header", b"\x01" + struct.pack("<I", 0))


if __name__ == "__main__":
    main()
