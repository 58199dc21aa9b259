// The int8 dot-product row kernel (int8_kernel.h) for AVX-VNNI (VEX-encoded vpdpbusd, e.g. Alder
// Lake and later: 4 u8 x s8 products summed straight into int32, no int16 saturation). Called only
// when cpu_has(Int8Isa) says the CPU has it. No state.
#include "simd.h"

// clang ignores GCC's target pragma; its own attribute pragma does the same for every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

namespace tessera::ops::cpu::detail {
namespace {
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}
inline __m256i acc_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(acc, u, s);
}
// 1 KiB ahead, as the AVX2 kernels (no AVX-VNNI machine without AVX-512 has been measured).
constexpr size_t kPrefetchAhead = 1024;
constexpr bool kInt16Sums = false;
}  // namespace
}  // namespace tessera::ops::cpu::detail

#include "int8_kernel.h"
#include "packed_kernel.h"

namespace tessera::ops::cpu::detail {
void int8_rows_avxvnni(const Int8Args& a, int64_t n0, int64_t n1) { int8_rows_impl(a, n0, n1); }
void packed_rows_avxvnni(const Int8Args& a, int64_t n0, int64_t n1) {
  prefetch_start(a, n0, n1);
  packed_rows_impl(a, n0, n1);
}
}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
