// AVX2 inner loops of the CPU paged attention (attention.cpp), over one chunk of keys whose rows
// sit anywhere in the paged cache (a pointer per key): the scores of one query head, 8 keys per
// pass so that 8 dot products share one horizontal reduction, and the value accumulation of one
// head with its accumulator held in registers across the keys. AVX2+FMA via a target pragma,
// reached only after have_avx2(). No state.
#include <cstdint>

#include "../kv_rows.h"
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

// Eight values of a cache row from element d, widened to fp32 (F16: F16C; BF16: the 16 bits above
// 16 zero bits; both exact).
template <DType T>
inline __m256 load8(const void* row, int d) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + d);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + d));
    if constexpr (T == DType::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// q . k_j for 8 keys (hd % 8 == 0): lane-wise FMAs over the head, then one hadd tree. Every key
// is summed in the same order whichever of the 8 places it takes.
template <DType T>
inline __m256 dot8(const float* q, const void* const* k, int hd) {
  __m256 a[8];
  for (int j = 0; j < 8; ++j) a[j] = _mm256_mul_ps(_mm256_loadu_ps(q), load8<T>(k[j], 0));
  for (int d = 8; d < hd; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(qv, load8<T>(k[j], d), a[j]);
  }
  // hadd pairs within 128-bit halves: u0 = [k0..k3 low-half sums | k0..k3 high-half sums].
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// acc[0, 8R) += sum over keys i of w[i] * v_i[0, 8R), the accumulator in R registers.
template <DType T, int R>
void axpy_block(const float* w, const void* const* v, int64_t n, int d0, float* acc) {
  __m256 a[R];
  for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(acc + d0 + 8 * r);
  for (int64_t i = 0; i < n; ++i) {
    const __m256 wi = _mm256_set1_ps(w[i]);
    for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(wi, load8<T>(v[i], d0 + 8 * r), a[r]);
  }
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + d0 + 8 * r, a[r]);
}

template <DType T>
void dot_keys(const float* q, const void* const* keys, int64_t n, int hd, float scale, float* s) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(dot8<T>(q, keys + i, hd), vs));
  if (i == n) return;
  // The last < 8 keys: the same arithmetic with the missing places repeating the last key.
  const void* k[8];
  for (int j = 0; j < 8; ++j) k[j] = keys[i + j < n ? i + j : n - 1];
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_mul_ps(dot8<T>(q, k, hd), vs));
  for (int j = 0; i + j < n; ++j) s[i + j] = out[j];
}

template <DType T>
void axpy_keys(const float* w, const void* const* vals, int64_t n, int hd, float* acc) {
  int d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) axpy_block<T, 8>(w, vals, n, d0, acc);
  switch ((hd - d0) / 8) {
    case 7:
      return axpy_block<T, 7>(w, vals, n, d0, acc);
    case 6:
      return axpy_block<T, 6>(w, vals, n, d0, acc);
    case 5:
      return axpy_block<T, 5>(w, vals, n, d0, acc);
    case 4:
      return axpy_block<T, 4>(w, vals, n, d0, acc);
    case 3:
      return axpy_block<T, 3>(w, vals, n, d0, acc);
    case 2:
      return axpy_block<T, 2>(w, vals, n, d0, acc);
    case 1:
      return axpy_block<T, 1>(w, vals, n, d0, acc);
    default:
      return;
  }
}

}  // namespace

void dot_keys_avx2(DType t, const float* q, const void* const* keys, int64_t n, int hd, float scale,
                   float* s) {
  if (t == DType::kF16) return dot_keys<DType::kF16>(q, keys, n, hd, scale, s);
  if (t == DType::kBF16) return dot_keys<DType::kBF16>(q, keys, n, hd, scale, s);
  return dot_keys<DType::kF32>(q, keys, n, hd, scale, s);
}

void axpy_keys_avx2(DType t, const float* w, const void* const* vals, int64_t n, int hd,
                    float* acc) {
  if (t == DType::kF16) return axpy_keys<DType::kF16>(w, vals, n, hd, acc);
  if (t == DType::kBF16) return axpy_keys<DType::kBF16>(w, vals, n, hd, acc);
  return axpy_keys<DType::kF32>(w, vals, n, hd, acc);
}

void kv_store_row_avx2(DType t, const float* src, void* dst, int64_t n) {
  if (t != DType::kF16) return ops::detail::kv_store_row(t, src, dst, n);
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  ops::detail::kv_store_row(t, src + i, d + i, n - i);
}

void kv_load_row_avx2(DType t, const void* src, float* dst, int64_t n) {
  if (t == DType::kF32) return ops::detail::kv_load_row(t, src, dst, n);
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(dst + i, t == DType::kF16 ? _mm256_cvtph_ps(h)
                                               : _mm256_castsi256_ps(_mm256_slli_epi32(
                                                     _mm256_cvtepu16_epi32(h), 16)));
  }
  ops::detail::kv_load_row(t, s + i, dst + i, n - i);
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
