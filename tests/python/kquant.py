"""A small numpy K-quant quantizer (Q2_K..Q6_K, ggml's 256-element super-blocks), for the tests
and tools that need K-quant files: the `gguf` package reads and dequantizes these types but
cannot make them. Plain min/max rounding, not ggml's error-minimising search, so its blocks are
valid but somewhat less accurate than llama-quantize's. The bit layouts are those that
gguf.quants' dequantizers (and ggml-common.h) read; each packer below is their inverse.

quantize(x, qtype) -> uint8 array [..., row_bytes]; random_blocks(qtype, n, rng) -> n blocks of
random bits with finite scales (every bit pattern the dequantizer may meet)."""

import numpy as np
from gguf import GGMLQuantizationType as T

QK = 256
BLOCK_BYTES = {T.Q2_K: 84, T.Q3_K: 110, T.Q4_K: 144, T.Q5_K: 176, T.Q6_K: 210}
# Byte offsets of the fp16 super-block scale fields (d, then dmin where the type has one).
HALF_FIELDS = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def _f16(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16)


def _safe_div(a, b):
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape), np.float32),
                     where=b != 0)


def _asym(x, qmax, smax):
    """Sub-blocks x[nb, S, L] as q*d*sc - dmin*m with q in [0, qmax], sc, m in [0, smax].
    Returns d, dmin (fp16, [nb]), sc, m ([nb, S]) and q ([nb, S, L])."""
    mins = np.maximum(0.0, -x.min(-1))  # ggml keeps mins <= 0 as a subtracted dmin * m
    scales = (x.max(-1) + mins) / qmax
    d, dmin = _f16(scales.max(-1) / smax), _f16(mins.max(-1) / smax)
    sc = np.clip(np.rint(_safe_div(scales, d.astype(np.float32)[:, None])), 0, smax)
    m = np.clip(np.rint(_safe_div(mins, dmin.astype(np.float32)[:, None])), 0, smax)
    dl = d.astype(np.float32)[:, None] * sc.astype(np.float32)
    ml = dmin.astype(np.float32)[:, None] * m.astype(np.float32)
    q = np.clip(np.rint(_safe_div(x + ml[..., None], dl[..., None])), 0, qmax)
    return d, dmin, sc.astype(np.uint8), m.astype(np.uint8), q.astype(np.uint8)


def _sym(x, qmin, qmax, smax):
    """Sub-blocks x[nb, S, L] as d*sc*q with q in [qmin, qmax], sc in [0, smax]."""
    scales = np.abs(x).max(-1) / -qmin
    d = _f16(scales.max(-1) / smax)
    sc = np.clip(np.rint(_safe_div(scales, d.astype(np.float32)[:, None])), 0, smax)
    dl = d.astype(np.float32)[:, None] * sc.astype(np.float32)
    q = np.clip(np.rint(_safe_div(x, dl[..., None])), qmin, qmax)
    return d, sc.astype(np.int32), q.astype(np.int32)


def _pack_k4_scales(sc, m):
    """Eight 6-bit scales and mins [nb, 8] -> the 12 bytes Q4_K / Q5_K store."""
    out = np.empty((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)
    return out


def _bits_by_chunk(q, shift, width):
    """Elements [nb, 8*32] in chunks of 32: byte l gets chunk c's bits shifted to `shift * c`."""
    q = q.reshape(q.shape[0], -1, 32).astype(np.uint32)
    out = np.zeros((q.shape[0], 32), np.uint32)
    for c in range(q.shape[1]):
        out |= (q[:, c] & ((1 << width) - 1)) << (shift * c)
    return out.astype(np.uint8)


def _q2_lows(q):
    """2-bit values [nb, 256] -> qs[nb, 64]: element 128h + 32j + l in bits 2j of byte 32h + l."""
    return np.concatenate([_bits_by_chunk(q[:, :128], 2, 2), _bits_by_chunk(q[:, 128:], 2, 2)], 1)


def _half_bytes(a):
    return _f16(a).reshape(-1, 1).view(np.uint8)


def _quantize_blocks(x, qtype):
    nb = x.shape[0]
    if qtype == T.Q2_K:
        d, dmin, sc, m, q = _asym(x.reshape(nb, 16, 16), 3, 15)
        return np.concatenate([sc | (m << 4), _q2_lows(q.reshape(nb, QK)), _half_bytes(d),
                               _half_bytes(dmin)], 1)
    if qtype == T.Q3_K:
        d, sc, q = _sym(x.reshape(nb, 16, 16), -4, 3, 31)
        q = (q + 4).reshape(nb, QK)
        s6 = (sc + 32).astype(np.uint32)
        scales = np.empty((nb, 12), np.uint8)
        scales[:, :8] = (s6[:, :8] & 15) | ((s6[:, 8:] & 15) << 4)
        hi = np.zeros((nb, 4), np.uint32)
        for g in range(4):
            hi |= ((s6[:, 4 * g:4 * g + 4] >> 4) & 3) << (2 * g)
        scales[:, 8:] = hi
        return np.concatenate([_bits_by_chunk(q >> 2, 1, 1), _q2_lows(q & 3), scales,
                               _half_bytes(d)], 1)
    if qtype in (T.Q4_K, T.Q5_K):
        five = qtype == T.Q5_K
        d, dmin, sc, m, q = _asym(x.reshape(nb, 8, 32), 31 if five else 15, 63)
        lo = q & 15
        qs = (lo[:, 0::2] | (lo[:, 1::2] << 4)).reshape(nb, 128)
        parts = [_half_bytes(d), _half_bytes(dmin), _pack_k4_scales(sc, m)]
        if five:
            parts.append(_bits_by_chunk((q >> 4).reshape(nb, QK), 1, 1))
        return np.concatenate(parts + [qs], 1)
    if qtype == T.Q6_K:
        d, sc, q = _sym(x.reshape(nb, 16, 16), -32, 31, 127)
        q = (q + 32).reshape(nb, 2, 4, 32).astype(np.uint8)  # [h, j, l]
        ql = np.concatenate([q[:, :, 0] & 15 | ((q[:, :, 2] & 15) << 4),
                             q[:, :, 1] & 15 | ((q[:, :, 3] & 15) << 4)], -1)  # [h, 64]
        qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | \
            ((q[:, :, 3] >> 4) << 6)
        return np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64),
                               sc.astype(np.int8).view(np.uint8), _half_bytes(d)], 1)
    raise ValueError(f"not a K-quant: {qtype}")


def quantize(x, qtype):
    """Rows of float32 x [..., n] (n a multiple of 256) -> uint8 [..., n / 256 * block bytes]."""
    x = np.asarray(x, dtype=np.float32)
    assert x.shape[-1] % QK == 0, x.shape
    blocks = _quantize_blocks(x.reshape(-1, QK), qtype)
    assert blocks.shape[1] == BLOCK_BYTES[qtype]
    return blocks.reshape(*x.shape[:-1], x.shape[-1] // QK * BLOCK_BYTES[qtype])


def random_blocks(qtype, n, rng):
    """n super-blocks of random bits whose fp16 scales are finite, positive or negative."""
    b = rng.integers(0, 256, size=(n, BLOCK_BYTES[qtype]), dtype=np.uint8)
    for off in HALF_FIELDS[qtype]:
        b[:, off:off + 2] = _half_bytes(rng.uniform(-0.01, 0.01, n))
    return b


def _use_more_bits(i, n):
    """llama.cpp's choice of the layers that get the bigger type in the *_M mixes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# llama.cpp's fallbacks for rows that are not a multiple of 256 elements.
_FALLBACK = {T.Q4_K: T.Q5_0, T.Q6_K: T.Q8_0}


def q4_k_m_type(name, cols, n_layers, has_output=True):
    """The type llama.cpp's Q4_K_M gives the 2-D weight `name` (GGUF naming) with rows of `cols`:
    Q6_K for the output (or a tied embedding), attn_v and ffn_down of the use_more_bits layers,
    Q4_K elsewhere; Q5_0 / Q8_0 instead where the rows do not split into super-blocks."""
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    more = name == "output.weight" or (name == "token_embd.weight" and not has_output) or \
        ((".attn_v." in name or ".ffn_down." in name) and _use_more_bits(layer, n_layers))
    qtype = T.Q6_K if more else T.Q4_K
    return qtype if cols % QK == 0 else _FALLBACK[qtype]
