// The int8 dot-product kernels for AVX-512 VNNI (vpdpbusd, e.g. Cascade Lake and later Xeons: 4
// u8 x s8 products summed straight into int32, no int16 saturation): the row-major kernel
// (int8_kernel.h) on 256-bit EVEX registers, since a 32-element block fills one; the packed one
// on 512-bit registers, two 8-row groups at a time (packed_kernel512.h). Called only when
// cpu_has(Int8Isa) says the CPU has it. No state.
#include "simd.h"

// clang ignores GCC's target pragma; its own attribute pragma does the same for every function.
#if defined(__clang__)
#pragma clang attribute push(                                                      \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
// GCC 12's 512-bit intrinsics (cvtph_ps, cvtepi32_ps, inserti64x4) start from a deliberately
// undefined register (`__Y = __Y`), which -Wmaybe-uninitialized reports once they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace tessera::ops::cpu::detail {
namespace {
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}
inline __m256i acc_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(acc, u, s);
}
// 16 KiB ahead: on the Intel Xeon VM (AVX-512 VNNI, 2 MiB L2 per core) batch-1 decode took
// 4.3-4.9 ms per token against 6.0-6.9 with 1 KiB (8 KiB 4.6-5.4, 32-64 KiB 4.9-5.8): one core's
// stream is bound by the misses in flight, and farther prefetches keep more of them going.
constexpr size_t kPrefetchAhead = 16384;
constexpr bool kInt16Sums = false;
}  // namespace
}  // namespace tessera::ops::cpu::detail

#include "int8_kernel.h"
#include "packed_kernel.h"
#include "packed_kernel512.h"

namespace tessera::ops::cpu::detail {
void int8_rows_avx512vnni(const Int8Args& a, int64_t n0, int64_t n1) { int8_rows_impl(a, n0, n1); }
void packed_rows_avx512vnni(const Int8Args& a, int64_t n0, int64_t n1) {
  prefetch_start(a, n0, n1);
  packed_rows_512_impl(a, n0, n1);
}
}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
