// AVX2 kernels for the K-quant weights (Q2_K..Q6_K) with fp32 activations: the small-M matmul
// (every weight row streamed once, dotted against up to 8 activation rows) and the row
// dequantizer (embedding rows, prefill panels); and the integer path for Q2_K..Q6_K
// (int8_row_dot: int8 activation blocks, see int8_dot.h). Each 32-element chunk of a super-block is
// unpacked in registers to 4 x 8 fp32 quants. The dequantizer forms w = q * (d*sc) - dmin*m in
// one FMA (the reference rounds the product and the difference apart: at most 1 ulp of w away);
// the matmul scales partial dot products instead (row_dot). No activation quantization: results
// differ from the reference only by fp32 rounding order. No state but the integer path's per-thread
// scratch (Q2_K's 16-element sums); called only after have_avx2() (see simd.h).
#include <cstddef>
#include <cstring>
#include <vector>

// Included before the target pragma so that their inline functions stay baseline code in every
// translation unit (the linker keeps one copy of each).
#include "int8_dot.h"
#include "row_count.h"
#include "simd.h"
#include "tessera/core/half.h"

// clang ignores GCC's target pragma; its own attribute pragma does the same for every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include "avx2_common.h"

namespace tessera::ops::cpu::detail {
namespace {

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 32 signed bytes -> 4 x 8 floats (elements 0-7, 8-15, 16-23, 24-31).
inline void bytes_to_f32(__m256i q, __m256 out[4]) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

// The low 8 unsigned / signed bytes as 8 floats.
inline __m256 u8_to_f32(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
inline __m256 i8_to_f32(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// Bits [shift, shift + width) of each byte. The 16-bit shift drags bits of the neighbouring
// byte into the top, which the mask then clears (shift + width <= 8).
inline __m256i bits(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(static_cast<char>(mask)));
}

// 0xff in every byte whose bit `bit` is set.
inline __m256i bit_set(__m256i v, int bit) {
  const __m256i m = _mm256_set1_epi8(static_cast<char>(1 << bit));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, m), m);
}

// One super-block unpacked: the quants of chunk c (32 elements) and the fp32 scale and offset of
// each 16 elements (sub-blocks of 32 repeat theirs), so every type dots the same way.
struct Unpacked {
  float dl[16];
  float ml[16];  // subtracted; zero for the types without mins
};

// Scales of super-block `blk` and a function giving its chunk c as 32 signed bytes.
template <DType kType>
struct Format;

template <>
struct Format<DType::kQ2_K> {
  static constexpr size_t kBytes = sizeof(BlockQ2_K);
  static void scales(const uint8_t* blk, Unpacked& u) {
    const __m256 d = _mm256_set1_ps(half_at(blk + offsetof(BlockQ2_K, d)));
    const __m256 dmin = _mm256_set1_ps(half_at(blk + offsetof(BlockQ2_K, dmin)));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk));
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i sc = _mm_and_si128(raw, m4), mn = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
    _mm256_storeu_ps(u.dl, _mm256_mul_ps(d, u8_to_f32(sc)));
    _mm256_storeu_ps(u.dl + 8, _mm256_mul_ps(d, u8_to_f32(_mm_srli_si128(sc, 8))));
    _mm256_storeu_ps(u.ml, _mm256_mul_ps(dmin, u8_to_f32(mn)));
    _mm256_storeu_ps(u.ml + 8, _mm256_mul_ps(dmin, u8_to_f32(_mm_srli_si128(mn, 8))));
  }
  static __m256i chunk(const uint8_t* blk, int c) {
    return bits(load32(blk + offsetof(BlockQ2_K, qs) + 32 * (c / 4)), 2 * (c % 4), 3);
  }
};

template <>
struct Format<DType::kQ3_K> {
  static constexpr size_t kBytes = sizeof(BlockQ3_K);
  // kquant::scale_q3_k for all 16 sub-blocks at once: low nibbles of bytes 0-7 then their high
  // nibbles, ORed with bits 2 (i / 4) .. of byte 8 + i % 4 at bits 4-5 (a 32-bit shift by 0, 2, 4,
  // 6 per group of 4 lanes drags bits of the neighbouring byte only to bits 2 and up of a byte,
  // which the mask 3 clears), minus 32.
  static void scales(const uint8_t* blk, Unpacked& u) {
    const __m256 d = _mm256_set1_ps(half_at(blk + offsetof(BlockQ3_K, d)));
    const uint8_t* s = blk + offsetof(BlockQ3_K, scales);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i lo8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s));
    const __m128i lo =
        _mm_unpacklo_epi64(_mm_and_si128(lo8, m4), _mm_and_si128(_mm_srli_epi16(lo8, 4), m4));
    int32_t top;
    std::memcpy(&top, s + 8, 4);
    const __m128i hi = _mm_and_si128(
        _mm_srlv_epi32(_mm_set1_epi32(top), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    const __m128i sc = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
    _mm256_storeu_ps(u.dl, _mm256_mul_ps(d, i8_to_f32(sc)));
    _mm256_storeu_ps(u.dl + 8, _mm256_mul_ps(d, i8_to_f32(_mm_srli_si128(sc, 8))));
    _mm256_storeu_ps(u.ml, _mm256_setzero_ps());
    _mm256_storeu_ps(u.ml + 8, _mm256_setzero_ps());
  }
  static __m256i chunk(const uint8_t* blk, int c) {
    const __m256i lo = bits(load32(blk + offsetof(BlockQ3_K, qs) + 32 * (c / 4)), 2 * (c % 4), 3);
    // A clear high bit means -4: (lo | 4 * high) - 4.
    const __m256i high =
        _mm256_and_si256(bit_set(load32(blk + offsetof(BlockQ3_K, hmask)), c), _mm256_set1_epi8(4));
    return _mm256_sub_epi8(_mm256_or_si256(lo, high), _mm256_set1_epi8(4));
  }
};

// Eight 6-bit values (bytes of lo, then of hi) times `scale`, each stored twice (the two 16-element
// halves of its 32-element sub-block).
inline void store_pairs(float* out, uint32_t lo, uint32_t hi, float scale) {
  const __m128i bytes = _mm_set_epi32(0, 0, static_cast<int>(hi), static_cast<int>(lo));
  const __m256 v = _mm256_mul_ps(u8_to_f32(bytes), _mm256_set1_ps(scale));
  const __m256 a = _mm256_unpacklo_ps(v, v), b = _mm256_unpackhi_ps(v, v);
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(a, b, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(a, b, 0x31));
}

// kquant::scale_min_k4 for all eight sub-blocks at once, four bytes at a time: sub-blocks 4-7
// take the nibbles of bytes 8-11 and bits 6-7 of bytes 0-3 (scales) or 4-7 (mins) as bits 4-5.
template <typename Block>
void scales_k4(const uint8_t* blk, Unpacked& u) {
  uint32_t w[3];
  std::memcpy(w, blk + offsetof(Block, scales), sizeof(w));
  const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
  const uint32_t m_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
  store_pairs(u.dl, w[0] & 0x3f3f3f3fu, sc_hi, half_at(blk + offsetof(Block, d)));
  store_pairs(u.ml, w[1] & 0x3f3f3f3fu, m_hi, half_at(blk + offsetof(Block, dmin)));
}

template <>
struct Format<DType::kQ4_K> {
  static constexpr size_t kBytes = sizeof(BlockQ4_K);
  static void scales(const uint8_t* blk, Unpacked& u) { scales_k4<BlockQ4_K>(blk, u); }
  static __m256i chunk(const uint8_t* blk, int c) {
    return bits(load32(blk + offsetof(BlockQ4_K, qs) + 32 * (c / 2)), 4 * (c % 2), 0x0f);
  }
};

template <>
struct Format<DType::kQ5_K> {
  static constexpr size_t kBytes = sizeof(BlockQ5_K);
  static void scales(const uint8_t* blk, Unpacked& u) { scales_k4<BlockQ5_K>(blk, u); }
  static __m256i chunk(const uint8_t* blk, int c) {
    const __m256i lo =
        bits(load32(blk + offsetof(BlockQ5_K, qs) + 32 * (c / 2)), 4 * (c % 2), 0x0f);
    const __m256i high =
        _mm256_and_si256(bit_set(load32(blk + offsetof(BlockQ5_K, qh)), c), _mm256_set1_epi8(16));
    return _mm256_or_si256(lo, high);
  }
};

template <>
struct Format<DType::kQ6_K> {
  static constexpr size_t kBytes = sizeof(BlockQ6_K);
  static void scales(const uint8_t* blk, Unpacked& u) {
    const __m256 d = _mm256_set1_ps(half_at(blk + offsetof(BlockQ6_K, d)));
    const __m128i sc =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + offsetof(BlockQ6_K, scales)));
    _mm256_storeu_ps(u.dl, _mm256_mul_ps(d, i8_to_f32(sc)));
    _mm256_storeu_ps(u.dl + 8, _mm256_mul_ps(d, i8_to_f32(_mm_srli_si128(sc, 8))));
    _mm256_storeu_ps(u.ml, _mm256_setzero_ps());
    _mm256_storeu_ps(u.ml + 8, _mm256_setzero_ps());
  }
  static __m256i chunk(const uint8_t* blk, int c) {
    const int h = c / 4, j = c % 4;
    const __m256i lo =
        bits(load32(blk + offsetof(BlockQ6_K, ql) + 64 * h + 32 * (j % 2)), 4 * (j / 2), 0x0f);
    const __m256i hi = bits(load32(blk + offsetof(BlockQ6_K, qh) + 32 * h), 2 * j, 3);
    return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
  }
};

// Asks for the cache lines of the super-block at p (the next one, while this one is used).
template <size_t kBytes>
inline void prefetch_block(const uint8_t* p) {
  for (size_t off = 0; off < kBytes; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

// The 32 weights of chunk c as fp32: q * dl - ml, with the scales of its two 16-element halves.
template <DType kType>
inline void weights(const uint8_t* blk, const Unpacked& u, int c, __m256 w[4]) {
  bytes_to_f32(Format<kType>::chunk(blk, c), w);
  for (int half = 0; half < 2; ++half) {
    const __m256 dl = _mm256_set1_ps(u.dl[2 * c + half]), ml = _mm256_set1_ps(u.ml[2 * c + half]);
    w[2 * half] = _mm256_fmsub_ps(w[2 * half], dl, ml);
    w[2 * half + 1] = _mm256_fmsub_ps(w[2 * half + 1], dl, ml);
  }
}

// One weight row against M activation rows; writes M dot products to out. The scales are
// applied to partial dot products, not to the weights: per sub-block sum dl * (q . x) - ml * sum(x)
// (5 vector ops per 32 elements and activation row for Q4_K / Q5_K, whose 32-element activation
// sums come precomputed in a.xsum, against 8 for dequantize-then-dot).
template <DType kType, int M>
void row_dot(const uint8_t* row, const MatvecArgs& a, float* out) {
  constexpr size_t kBytes = Format<kType>::kBytes;
  constexpr bool kMin32 = kType == DType::kQ4_K || kType == DType::kQ5_K;
  constexpr bool kMin16 = kType == DType::kQ2_K;
  const int64_t nb = a.k / kQK_K, nsum = a.k / 32;
  __m256 acc[M], macc16[M];
  float macc32[M];
  for (int m = 0; m < M; ++m) {
    acc[m] = macc16[m] = _mm256_setzero_ps();
    macc32[m] = 0.0f;
  }
  Unpacked u;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + static_cast<size_t>(b) * kBytes;
    if (b + 1 < nb) prefetch_block<kBytes>(blk + kBytes);
    Format<kType>::scales(blk, u);
    for (int c = 0; c < 8; ++c) {
      __m256 q[4];
      bytes_to_f32(Format<kType>::chunk(blk, c), q);
      const __m256 dl0 = _mm256_set1_ps(u.dl[2 * c]), dl1 = _mm256_set1_ps(u.dl[2 * c + 1]);
      for (int m = 0; m < M; ++m) {
        const float* x = a.x + m * a.k + b * kQK_K + 32 * c;
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        const __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
        if constexpr (kMin32) {
          __m256 s = _mm256_mul_ps(q[0], x0);
          s = _mm256_fmadd_ps(q[1], x1, s);
          s = _mm256_fmadd_ps(q[2], x2, s);
          s = _mm256_fmadd_ps(q[3], x3, s);
          acc[m] = _mm256_fmadd_ps(dl0, s, acc[m]);
          macc32[m] += u.ml[2 * c] * a.xsum[m * nsum + b * 8 + c];
        } else {
          const __m256 s0 = _mm256_fmadd_ps(q[1], x1, _mm256_mul_ps(q[0], x0));
          const __m256 s1 = _mm256_fmadd_ps(q[3], x3, _mm256_mul_ps(q[2], x2));
          acc[m] = _mm256_fmadd_ps(dl1, s1, _mm256_fmadd_ps(dl0, s0, acc[m]));
          if constexpr (kMin16) {
            macc16[m] =
                _mm256_fmadd_ps(_mm256_set1_ps(u.ml[2 * c]), _mm256_add_ps(x0, x1), macc16[m]);
            macc16[m] =
                _mm256_fmadd_ps(_mm256_set1_ps(u.ml[2 * c + 1]), _mm256_add_ps(x2, x3), macc16[m]);
          }
        }
      }
    }
  }
  for (int m = 0; m < M; ++m) out[m] = hsum256(_mm256_sub_ps(acc[m], macc16[m])) - macc32[m];
}

// y[m, n] = dot(row n)[m] + bias[n] for n in [n0, n1), m < M; dot(row, out) writes one weight
// row's M results. Shared by the fp32 (MatvecArgs) and int8 (Int8Args) kernels.
template <int M, typename Args, typename Dot>
void each_row(const Args& a, int64_t n0, int64_t n1, Dot&& dot) {
  float out[M];
  for (int64_t n = n0; n < n1; ++n) {
    dot(a.w + static_cast<size_t>(n) * a.w_row_bytes, out);
    const float b = a.bias ? a.bias[n] : 0.0f;
    for (int m = 0; m < M; ++m) a.y[m * a.ldy + n] = out[m] + b;
  }
}

template <DType kType>
void rows(const MatvecArgs& a, int64_t n0, int64_t n1) {
  with_row_count(a.m_count, [&](auto m) {
    constexpr int M = decltype(m)::value;
    each_row<M>(a, n0, n1, [&](const uint8_t* row, float* out) { row_dot<kType, M>(row, a, out); });
  });
}

// The integer path (int8_dot.h) for one weight row against M quantized activation rows: each
// 32-element chunk's quants dot the activation block's int8 values exactly in int32, the low 4
// int32 lanes holding elements 0-15 and the high 4 elements 16-31, so one vector of the two
// 16-element scales times dx scales them. Signed quants (Q3_K, Q6_K: |q| <= 32) multiply as |q|
// against x with q's sign (as Q8_0: pairs <= 2 x 32 x 127, no int16 saturation); the unsigned
// ones (Q2_K 0..3, Q4_K 0..15, Q5_K 0..31) go into maddubs as they are (pairs <= 2 x 31 x 127).
// The Q4_K / Q5_K minimum enters as ml * sx per chunk; Q2_K's, one per 16 elements, as
// ml . sx16 per super-block, sx16 (dx times each 16 elements' sum of quants) formed once per call
// for all rows (half_sums).
template <DType kType, int M>
void int8_row_dot(const uint8_t* row, const Int8Args& a, const float* sx16, float* out) {
  constexpr size_t kBytes = Format<kType>::kBytes;
  constexpr bool kMin32 = kType == DType::kQ4_K || kType == DType::kQ5_K;
  constexpr bool kMin16 = kType == DType::kQ2_K;
  constexpr bool kUnsigned = kMin32 || kMin16;
  const int64_t nb = a.k / kQK_K, nblocks = a.k / 32;
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[M], macc16[M];
  float mins[M];
  for (int m = 0; m < M; ++m) {
    acc[m] = macc16[m] = _mm256_setzero_ps();
    mins[m] = 0.0f;
  }
  Unpacked u;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + static_cast<size_t>(b) * kBytes;
    if (b + 1 < nb) prefetch_block<kBytes>(blk + kBytes);
    Format<kType>::scales(blk, u);
    for (int c = 0; c < 8; ++c) {
      const __m256i w = Format<kType>::chunk(blk, c);
      const __m256i aw = kUnsigned ? w : _mm256_abs_epi8(w);
      const __m256 dl = _mm256_set_m128(_mm_set1_ps(u.dl[2 * c + 1]), _mm_set1_ps(u.dl[2 * c]));
      for (int m = 0; m < M; ++m) {
        const ActBlock& x = a.x[m * nblocks + b * 8 + c];
        const __m256i xq = load32(reinterpret_cast<const uint8_t*>(x.qs));
        const __m256i xs = kUnsigned ? xq : _mm256_sign_epi8(xq, w);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones16);
        acc[m] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dl, _mm256_set1_ps(x.d)), acc[m]);
        if constexpr (kMin32) mins[m] += u.ml[2 * c] * x.s;
      }
    }
    if constexpr (kMin16) {
      for (int m = 0; m < M; ++m) {
        const float* s = sx16 + 2 * (m * nblocks + b * 8);
        macc16[m] = _mm256_fmadd_ps(_mm256_loadu_ps(u.ml), _mm256_loadu_ps(s), macc16[m]);
        macc16[m] = _mm256_fmadd_ps(_mm256_loadu_ps(u.ml + 8), _mm256_loadu_ps(s + 8), macc16[m]);
      }
    }
  }
  for (int m = 0; m < M; ++m) out[m] = hsum256(_mm256_sub_ps(acc[m], macc16[m])) - mins[m];
}

// sx16[2 i + h] = dx * (sum of the quants of half h of activation block i), for the a.m_count
// rows' blocks in order (exact integer sums, one fp32 rounding each).
void half_sums(const Int8Args& a, std::vector<float>& sx16) {
  const int64_t blocks = a.m_count * (a.k / 32);
  sx16.resize(static_cast<size_t>(2 * blocks));
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < blocks; ++i) {
    const ActBlock& x = a.x[i];
    const __m256i s = _mm256_madd_epi16(
        _mm256_maddubs_epi16(ones8, load32(reinterpret_cast<const uint8_t*>(x.qs))), ones16);
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    sx16[static_cast<size_t>(2 * i)] =
        x.d * static_cast<float>(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
    sx16[static_cast<size_t>(2 * i + 1)] =
        x.d * static_cast<float>(lanes[4] + lanes[5] + lanes[6] + lanes[7]);
  }
}

template <DType kType>
void int8_rows_t(const Int8Args& a, int64_t n0, int64_t n1) {
  const float* s = nullptr;  // Q2_K's 16-element activation sums (int8_row_dot)
  if constexpr (kType == DType::kQ2_K) {
    thread_local std::vector<float> sx16;  // per thread: no allocation once it has grown
    half_sums(a, sx16);
    s = sx16.data();
  }
  with_row_count(a.m_count, [&](auto m) {
    constexpr int M = decltype(m)::value;
    each_row<M>(a, n0, n1,
                [&](const uint8_t* row, float* out) { int8_row_dot<kType, M>(row, a, s, out); });
  });
}

template <DType kType>
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  Unpacked u;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const uint8_t* blk = src + static_cast<size_t>(b) * Format<kType>::kBytes;
    Format<kType>::scales(blk, u);
    for (int c = 0; c < 8; ++c) {
      __m256 w[4];
      weights<kType>(blk, u, c, w);
      for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + b * kQK_K + 32 * c + 8 * j, w[j]);
    }
  }
}

}  // namespace

void kquant_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1) {
  switch (a.wtype) {
    case DType::kQ2_K:
      return rows<DType::kQ2_K>(a, n0, n1);
    case DType::kQ3_K:
      return rows<DType::kQ3_K>(a, n0, n1);
    case DType::kQ4_K:
      return rows<DType::kQ4_K>(a, n0, n1);
    case DType::kQ5_K:
      return rows<DType::kQ5_K>(a, n0, n1);
    default:
      return rows<DType::kQ6_K>(a, n0, n1);
  }
}

void kquant_int8_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1) {
  switch (a.wtype) {
    case DType::kQ2_K:
      return int8_rows_t<DType::kQ2_K>(a, n0, n1);
    case DType::kQ3_K:
      return int8_rows_t<DType::kQ3_K>(a, n0, n1);
    case DType::kQ4_K:
      return int8_rows_t<DType::kQ4_K>(a, n0, n1);
    case DType::kQ5_K:
      return int8_rows_t<DType::kQ5_K>(a, n0, n1);
    default:
      return int8_rows_t<DType::kQ6_K>(a, n0, n1);
  }
}

void dequantize_kquant_avx2(DType type, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::kQ2_K:
      return dequantize<DType::kQ2_K>(p, dst, n);
    case DType::kQ3_K:
      return dequantize<DType::kQ3_K>(p, dst, n);
    case DType::kQ4_K:
      return dequantize<DType::kQ4_K>(p, dst, n);
    case DType::kQ5_K:
      return dequantize<DType::kQ5_K>(p, dst, n);
    default:
      return dequantize<DType::kQ6_K>(p, dst, n);
  }
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
