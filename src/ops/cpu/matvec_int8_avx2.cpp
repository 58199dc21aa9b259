// The int8 dot-product row kernel (int8_kernel.h) for AVX2 (maddubs + madd: u8 x s8 pairs summed to
// int16, then pairs to int32; with 4- and 5-bit weights and |a| <= 127 the int16 sums cannot
// saturate, and Q8_0 uses |w| <= 128 so 2 x 128 x 127 < 32768 either). Called only when
// cpu_has(Int8Isa) says the CPU has it. No state.
#include "simd.h"

// clang ignores GCC's target pragma; its own attribute pragma does the same for every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace tessera::ops::cpu::detail {
namespace {
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
inline __m256i acc_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, dot_u8s8(u, s));
}
// 1 KiB ahead: on the AMD EPYC VMs batch-1 decode ran 1.1-1.2x faster than without prefetching
// (re-measured 2026-12-07 at 1 and 2 threads), 4 and 16 KiB no better (benchmarks/RESULTS.md).
constexpr size_t kPrefetchAhead = 1024;
constexpr bool kInt16Sums = true;
}  // namespace
}  // namespace tessera::ops::cpu::detail

#include "int8_kernel.h"
#include "packed_kernel.h"

namespace tessera::ops::cpu::detail {
void int8_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1) { int8_rows_impl(a, n0, n1); }
void packed_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1) {
  prefetch_start(a, n0, n1);
  packed_rows_impl(a, n0, n1);
}
}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
