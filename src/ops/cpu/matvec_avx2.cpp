// Small-M (decode) matmul kernels for AVX2: every weight row is read once, still quantized, and
// dotted against up to 8 activation rows. Q8_0 / Q4_0 / Q4_1 blocks are unpacked in registers
// (int8/nibbles -> int32 -> f32) and multiplied in fp32, so the result differs from the reference
// (dequantize, then dot) only by fp32 rounding order: no activation quantization is involved.
// Per block: acc += d * (q . x)  (+ m * sum(x) for Q4_1, with the block sums precomputed).
#include <cstring>

#include "row_count.h"
#include "simd.h"

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

// Loads the 32 quants of a 4-bit block as 4 x 8 floats (elements 0-7, 8-15, 16-23, 24-31).
// `bias8` subtracts 8 (Q4_0's signed range).
inline void unpack_q4(const uint8_t* qs, bool bias8, __m256 q[4]) {
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  __m128i lo = _mm_and_si128(raw, m4);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
  if (bias8) {
    lo = _mm_sub_epi8(lo, _mm_set1_epi8(8));
    hi = _mm_sub_epi8(hi, _mm_set1_epi8(8));
  }
  q[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  q[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
  q[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
  q[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

inline void unpack_q8(const int8_t* qs, __m256 q[4]) {
  for (int j = 0; j < 4; ++j)
    q[j] = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * j))));
}

// (q . x) over one 32-element block.
inline __m256 block_dot(const __m256 q[4], const float* x) {
  __m256 s = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
  s = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x + 8), s);
  s = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(x + 16), s);
  return _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x + 24), s);
}

enum class Kind { kQ8_0, kQ4_0, kQ4_1 };

// One weight row against M activation rows; writes M dot products to out.
template <Kind kKind, int M>
void quant_row(const uint8_t* row, const MatvecArgs& a, float* out) {
  constexpr size_t kBytes = kKind == Kind::kQ8_0 ? 34 : kKind == Kind::kQ4_0 ? 18 : 20;
  const int64_t nb = a.k / 32;
  __m256 acc[M];
  float macc[M];
  for (int m = 0; m < M; ++m) {
    acc[m] = _mm256_setzero_ps();
    macc[m] = 0.0f;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + static_cast<size_t>(b) * kBytes;
    if (b + 4 < nb) _mm_prefetch(reinterpret_cast<const char*>(blk + 4 * kBytes), _MM_HINT_T0);
    __m256 q[4];
    if constexpr (kKind == Kind::kQ8_0) {
      unpack_q8(reinterpret_cast<const int8_t*>(blk + 2), q);
    } else if constexpr (kKind == Kind::kQ4_0) {
      unpack_q4(blk + 2, true, q);
    } else {
      unpack_q4(blk + 4, false, q);
    }
    const __m256 d = _mm256_set1_ps(half_at(blk));
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(d, block_dot(q, a.x + m * a.k + b * 32), acc[m]);
    if constexpr (kKind == Kind::kQ4_1) {
      const float mn = half_at(blk + 2);
      for (int m = 0; m < M; ++m) macc[m] += mn * a.xsum[m * nb + b];
    }
  }
  for (int m = 0; m < M; ++m) out[m] = hsum256(acc[m]) + macc[m];
}

// One f32 weight row against M activation rows.
template <int M>
void f32_row(const float* w, const float* x, int64_t k, float* out) {
  __m256 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
    for (int m = 0; m < M; ++m) {
      acc0[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * k + i), acc0[m]);
      acc1[m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * k + i + 8), acc1[m]);
    }
  }
  for (; i + 8 <= k; i += 8) {
    const __m256 w0 = _mm256_loadu_ps(w + i);
    for (int m = 0; m < M; ++m)
      acc0[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * k + i), acc0[m]);
  }
  for (int m = 0; m < M; ++m) {
    float s = hsum256(_mm256_add_ps(acc0[m], acc1[m]));
    for (int64_t j = i; j < k; ++j) s += w[j] * x[m * k + j];
    out[m] = s;
  }
}

template <int M>
void rows_m(const MatvecArgs& a, int64_t n0, int64_t n1) {
  float out[M];
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    switch (a.wtype) {
      case DType::kQ8_0:
        quant_row<Kind::kQ8_0, M>(row, a, out);
        break;
      case DType::kQ4_0:
        quant_row<Kind::kQ4_0, M>(row, a, out);
        break;
      case DType::kQ4_1:
        quant_row<Kind::kQ4_1, M>(row, a, out);
        break;
      case DType::kF32:
        f32_row<M>(reinterpret_cast<const float*>(row), a.x, a.k, out);
        break;
      default:  // F16, BF16, Q5_*: dequantize the row to f32 (L1-resident), then dot.
        dequantize_row_avx2(a.wtype, row, a.scratch, a.k);
        f32_row<M>(a.scratch, a.x, a.k, out);
        break;
    }
    const float b = a.bias ? a.bias[n] : 0.0f;
    for (int m = 0; m < M; ++m) a.y[m * a.ldy + n] = out[m] + b;
  }
}

}  // namespace

void matvec_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1) {
  with_row_count(a.m_count, [&](auto m) { rows_m<decltype(m)::value>(a, n0, n1); });
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
