// AVX2 kernels of the legacy 5-bit types (Q5_0, Q5_1) with fp32 activations: the small-M matmul
// (blocks unpacked in registers, as matvec_avx2.cpp does for Q4_0/Q4_1) and the dequantizer for
// embedding rows and prefill panels. They matter for K-quant files: llama.cpp's Q4_K_M stores rows
// that are not a multiple of 256 as Q5_0, and through the scalar reference these took two thirds
// of a Q4_K_M decode step. Stateless; called only after have_avx2().
#include <cstddef>
#include <cstring>

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

// The 32 bits of qh as 32 bytes, 0xff where the bit is set: byte i takes byte i/8 of qh and
// tests bit i%8 (every other bit forced to 1, so only that bit decides the compare with -1).
inline __m256i bits_to_bytes(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(v)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i others = _mm256_set1_epi64x(static_cast<int64_t>(0x7fbfdfeff7fbfdfeULL));
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
}

// Block b's 32 quants as 4 x 8 floats (Q5_0 already offset by -16), its d and (Q5_1) m.
template <bool kHasMin>
inline void unpack(const uint8_t* blk, __m256 q[4], float* d, float* m) {
  constexpr size_t kQh = kHasMin ? offsetof(BlockQ5_1, qh) : offsetof(BlockQ5_0, qh);
  constexpr size_t kQs = kHasMin ? offsetof(BlockQ5_1, qs) : offsetof(BlockQ5_0, qs);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  uint16_t dh, mh = 0;
  std::memcpy(&dh, blk, 2);
  if constexpr (kHasMin) std::memcpy(&mh, blk + 2, 2);
  // Byte j holds element j (low nibble) and j + 16 (high nibble); bit j of qh is element j's.
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQs));
  const __m256i lo4 =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
  __m256i v =
      _mm256_or_si256(lo4, _mm256_and_si256(bits_to_bytes(blk + kQh), _mm256_set1_epi8(16)));
  if constexpr (!kHasMin) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  q[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  q[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
  q[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
  q[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
  *d = _cvtsh_ss(dh);
  *m = _cvtsh_ss(mh);
}

template <bool kHasMin>
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  constexpr size_t kBytes = kHasMin ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
  for (int64_t b = 0; b < n / 32; ++b) {
    __m256 q[4];
    float d, m;
    unpack<kHasMin>(src + static_cast<size_t>(b) * kBytes, q, &d, &m);
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    // Q5_0: (q - 16) * d, one rounding as in the reference; Q5_1: q * d + m in one FMA.
    for (int j = 0; j < 4; ++j)
      _mm256_storeu_ps(dst + b * 32 + 8 * j,
                       kHasMin ? _mm256_fmadd_ps(q[j], vd, vm) : _mm256_mul_ps(q[j], vd));
  }
}

// One weight row against M activation rows: per block d * (q . x) (+ m * sum(x) for Q5_1, the
// block sums precomputed in a.xsum), as matvec_avx2.cpp does for Q4_1.
template <bool kHasMin, int M>
void row_dot(const uint8_t* row, const MatvecArgs& a, float* out) {
  constexpr size_t kBytes = kHasMin ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
  const int64_t nb = a.k / 32;
  __m256 acc[M];
  float macc[M];
  for (int i = 0; i < M; ++i) {
    acc[i] = _mm256_setzero_ps();
    macc[i] = 0.0f;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + static_cast<size_t>(b) * kBytes;
    if (b + 4 < nb) _mm_prefetch(reinterpret_cast<const char*>(blk + 4 * kBytes), _MM_HINT_T0);
    __m256 q[4];
    float d, m;
    unpack<kHasMin>(blk, q, &d, &m);
    const __m256 vd = _mm256_set1_ps(d);
    for (int i = 0; i < M; ++i) {
      const float* x = a.x + i * a.k + b * 32;
      __m256 s = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
      s = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x + 8), s);
      s = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(x + 16), s);
      s = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x + 24), s);
      acc[i] = _mm256_fmadd_ps(vd, s, acc[i]);
      if constexpr (kHasMin) macc[i] += m * a.xsum[i * nb + b];
    }
  }
  for (int i = 0; i < M; ++i) out[i] = hsum256(acc[i]) + macc[i];
}

template <bool kHasMin, int M>
void rows_m(const MatvecArgs& a, int64_t n0, int64_t n1) {
  float out[M];
  for (int64_t n = n0; n < n1; ++n) {
    row_dot<kHasMin, M>(a.w + static_cast<size_t>(n) * a.w_row_bytes, a, out);
    const float b = a.bias ? a.bias[n] : 0.0f;
    for (int i = 0; i < M; ++i) a.y[i * a.ldy + n] = out[i] + b;
  }
}

template <bool kHasMin>
void rows(const MatvecArgs& a, int64_t n0, int64_t n1) {
  with_row_count(a.m_count, [&](auto m) { rows_m<kHasMin, decltype(m)::value>(a, n0, n1); });
}

}  // namespace

void dequantize_q5_avx2(DType type, const void* src, float* dst, int64_t n) {
  if (type == DType::kQ5_1) return dequantize<true>(static_cast<const uint8_t*>(src), dst, n);
  dequantize<false>(static_cast<const uint8_t*>(src), dst, n);
}

void q5_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1) {
  if (a.wtype == DType::kQ5_1) return rows<true>(a, n0, n1);
  rows<false>(a, n0, n1);
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
