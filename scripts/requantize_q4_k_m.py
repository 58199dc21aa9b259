#!/usr/bin/env python3
"""Re-quantizes a llama-family GGUF to llama.cpp's Q4_K_M mix with Tessera's numpy K-quant packer
(tests/python/kquant.py): every weight is dequantized to float32 and quantized again (Q4_K; Q6_K
for the output, attn_v and ffn_down of the use_more_bits layers; Q5_0 / Q8_0 where rows are not a
multiple of 256, as llama.cpp falls back). Metadata is copied. For benchmarks and tests only:
min/max rounding, so slightly less accurate than llama-quantize, and quantizing a file that is
already quantized compounds the two roundings. Never commit the output. With --q8_0 every 2-D
weight becomes Q8_0 instead (gguf's quantizer): the Q8_0 version of the same model.

usage: scripts/requantize_q4_k_m.py [--q8_0] IN.gguf OUT.gguf"""

import os
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import kquant  # noqa: E402


def main(src, dst, q8_0=False):
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    n_layers = int(r.fields[f"{arch}.block_count"].contents())
    has_output = any(t.name == "output.weight" for t in r.tensors)
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), f.types[0], sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8_0 else gguf.LlamaFileType.MOSTLY_Q4_K_M)
    counts = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if x.ndim != 2:
            w.add_tensor(t.name, x)
            continue
        qtype = gguf.GGMLQuantizationType.Q8_0 if q8_0 else \
            kquant.q4_k_m_type(t.name, x.shape[1], n_layers, has_output)
        raw = kquant.quantize(x, qtype) if qtype in kquant.BLOCK_BYTES else \
            gguf.quants.quantize(x, qtype)
        w.add_tensor(t.name, raw, raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + raw.nbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("weight bytes by type:", {k: f"{v / 1e6:.1f} MB" for k, v in sorted(counts.items())})


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--q8_0"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], q8_0="--q8_0" in sys.argv[1:])
