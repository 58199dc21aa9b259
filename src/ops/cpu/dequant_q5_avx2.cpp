// AVX2 dequantizers of the legacy 5-bit types (Q5_0, Q5_1) into fp32, for the fp32 matmul paths
// that dequantize a row into L1 scratch or a prefill panel. Before this they fell back to the
// scalar reference, which took two thirds of a Q4_K_M decode step (llama.cpp's Q4_K_M stores
// rows that are not a multiple of 256 as Q5_0). Stateless; called only after have_avx2().
#include <cstddef>
#include <cstring>

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

template <bool kHasMin>
void dequantize(const uint8_t* src, float* dst, int64_t n) {
  constexpr size_t kBytes = kHasMin ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
  constexpr size_t kQh = kHasMin ? offsetof(BlockQ5_1, qh) : offsetof(BlockQ5_0, qh);
  constexpr size_t kQs = kHasMin ? offsetof(BlockQ5_1, qs) : offsetof(BlockQ5_0, qs);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = src + static_cast<size_t>(b) * kBytes;
    uint16_t dh, mh = 0;
    std::memcpy(&dh, blk, 2);
    if constexpr (kHasMin) std::memcpy(&mh, blk + 2, 2);
    // Byte j holds element j (low nibble) and j + 16 (high nibble); bit j of qh is element j's.
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQs));
    const __m256i lo4 =
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
    __m256i q =
        _mm256_or_si256(lo4, _mm256_and_si256(bits_to_bytes(blk + kQh), _mm256_set1_epi8(16)));
    if constexpr (!kHasMin) q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh)), m = _mm256_set1_ps(_cvtsh_ss(mh));
    const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
    for (int j = 0; j < 4; ++j) {
      const __m128i part = j % 2 ? _mm_srli_si128(halves[j / 2], 8) : halves[j / 2];
      const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part));
      // Q5_0: (q - 16) * d, one rounding as in the reference; Q5_1: q * d + m in one FMA.
      _mm256_storeu_ps(dst + b * 32 + 8 * j,
                       kHasMin ? _mm256_fmadd_ps(f, d, m) : _mm256_mul_ps(f, d));
    }
  }
}

}  // namespace

void dequantize_q5_avx2(DType type, const void* src, float* dst, int64_t n) {
  if (type == DType::kQ5_1) return dequantize<true>(static_cast<const uint8_t*>(src), dst, n);
  dequantize<false>(static_cast<const uint8_t*>(src), dst, n);
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
