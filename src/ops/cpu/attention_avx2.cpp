// AVX2 inner loops of the CPU paged attention (attention.cpp), over one chunk of keys whose rows
// sit anywhere in the paged cache (a pointer per key): the scores of a GQA group's query heads and
// their value accumulation. Each K/V row is widened once for up to three heads of the group at a
// time (4 keys x 3 heads of score accumulators, 24 lanes x 3 heads of value ones); a single
// head takes 8 keys per pass so that 8 dot products share one horizontal reduction, and keeps its
// accumulator in registers across the keys. Every path sums a head's products in one order, so a
// score or an output is the same bits however the heads were grouped. AVX2+FMA via a target pragma,
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

// The sum of 4 accumulators' lanes each, for keys j..j+3: one hadd tree, then the two 128-bit
// halves added. Per key ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)): the order dot8's tree gives every
// key, so a key's score is the same bits whichever path (1 head, or G heads at a time) computed it.
inline __m128 sum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
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
  return _mm256_set_m128(sum4(a[4], a[5], a[6], a[7]), sum4(a[0], a[1], a[2], a[3]));
}

// G query heads (rows of q, hd apart) against 4 keys: each key row is widened once and used by
// all G heads (the GQA group shares its K rows), 4G accumulators. Per head and key the same
// products in the same order as dot8. Scores of head g go to s[g * ss + 0..3], times scale.
template <DType T, int G>
inline void dot4_heads(const float* q, const void* const* k, int hd, float scale, float* s,
                       int64_t ss) {
  __m256 a[G][4];
  for (int j = 0; j < 4; ++j) {
    const __m256 kv = load8<T>(k[j], 0);
    for (int g = 0; g < G; ++g) a[g][j] = _mm256_mul_ps(_mm256_loadu_ps(q + g * hd), kv);
  }
  for (int d = 8; d < hd; d += 8) {
    for (int j = 0; j < 4; ++j) {
      const __m256 kv = load8<T>(k[j], d);
      for (int g = 0; g < G; ++g)
        a[g][j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + g * hd + d), kv, a[g][j]);
    }
  }
  const __m128 vs = _mm_set1_ps(scale);
  for (int g = 0; g < G; ++g)
    _mm_storeu_ps(s + g * ss, _mm_mul_ps(sum4(a[g][0], a[g][1], a[g][2], a[g][3]), vs));
}

// acc[g * hd + d0 + (0, 8R)] += sum over keys i of w[g * ws + i] * v_i[d0 + (0, 8R)] for G heads,
// the accumulators in G x R registers: each value row's 8R lanes are widened once for all G heads,
// and every head gets the same FMAs in the same key order whatever G is.
template <DType T, int G, int R>
void axpy_block_heads(const float* w, int64_t ws, const void* const* v, int64_t n, int hd, int d0,
                      float* acc) {
  __m256 a[G][R];
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; ++r) a[g][r] = _mm256_loadu_ps(acc + g * hd + d0 + 8 * r);
  for (int64_t i = 0; i < n; ++i) {
    __m256 vv[R];
    for (int r = 0; r < R; ++r) vv[r] = load8<T>(v[i], d0 + 8 * r);
    for (int g = 0; g < G; ++g) {
      const __m256 wi = _mm256_set1_ps(w[g * ws + i]);
      for (int r = 0; r < R; ++r) a[g][r] = _mm256_fmadd_ps(wi, vv[r], a[g][r]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + g * hd + d0 + 8 * r, a[g][r]);
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

template <DType T, int G>
void dot_keys_heads(const float* q, const void* const* keys, int64_t n, int hd, float scale,
                    float* s, int64_t ss) {
  int64_t i = 0;
  // The rows of keys 8-11 on are requested while keys i..i+3 are multiplied: a kv head's rows are
  // one of every num_kv_heads in a block, blocks anywhere in the cache, and at long contexts they
  // come from memory. Four rows in flight from the loads alone left the loop waiting on them
  // (decode at 2048 keys ~15% slower than one head at a time with its 8 rows per pass).
  const size_t row_bytes = static_cast<size_t>(hd) * (T == DType::kF32 ? 4 : 2);
  for (; i + 4 <= n; i += 4) {
    for (int64_t j = i + 8; j < i + 12 && j < n; ++j)
      for (size_t b = 0; b < row_bytes; b += 64)
        _mm_prefetch(static_cast<const char*>(keys[j]) + b, _MM_HINT_T0);
    dot4_heads<T, G>(q, keys + i, hd, scale, s + i, ss);
  }
  if (i == n) return;
  const void* k[4];  // the last < 4 keys, the missing places repeating the last key
  for (int j = 0; j < 4; ++j) k[j] = keys[i + j < n ? i + j : n - 1];
  float out[G * 4];
  dot4_heads<T, G>(q, k, hd, scale, out, 4);
  for (int g = 0; g < G; ++g)
    for (int j = 0; i + j < n; ++j) s[g * ss + i + j] = out[g * 4 + j];
}

// The last (hd - d0) / 8 < R registers of lanes of a head, one block of that many.
template <DType T, int G, int R>
void axpy_tail(const float* w, int64_t ws, const void* const* vals, int64_t n, int hd, int d0,
               float* acc) {
  if constexpr (R > 0) {
    if ((hd - d0) / 8 == R) return axpy_block_heads<T, G, R>(w, ws, vals, n, hd, d0, acc);
    axpy_tail<T, G, R - 1>(w, ws, vals, n, hd, d0, acc);
  }
}

// G heads (1, 2 or 3) in blocks of R = 8, 4 or 3 registers of lanes, then what is left of the
// head: G x R accumulators, R widened rows and a weight stay within the 16 registers (3 x 4
// spilled an accumulator, whose store-to-load round trip then set the pace of the loop).
template <DType T, int G>
void axpy_keys_heads(const float* w, int64_t ws, const void* const* vals, int64_t n, int hd,
                     float* acc) {
  constexpr int R = G == 1 ? 8 : G == 2 ? 4 : 3;
  int d0 = 0;
  for (; d0 + 8 * R <= hd; d0 += 8 * R) axpy_block_heads<T, G, R>(w, ws, vals, n, hd, d0, acc);
  axpy_tail<T, G, R - 1>(w, ws, vals, n, hd, d0, acc);
}

// Heads [0, group) three at a time (two, one for what is left).
template <DType T>
void dot_keys_group(const float* q, int group, const void* const* keys, int64_t n, int hd,
                    float scale, float* s, int64_t ss) {
  int g = 0;
  for (; g + 3 <= group; g += 3)
    dot_keys_heads<T, 3>(q + g * hd, keys, n, hd, scale, s + g * ss, ss);
  if (group - g == 2) dot_keys_heads<T, 2>(q + g * hd, keys, n, hd, scale, s + g * ss, ss);
  if (group - g == 1) dot_keys<T>(q + g * hd, keys, n, hd, scale, s + g * ss);
}

template <DType T>
void axpy_keys_group(const float* w, int64_t ws, int group, const void* const* vals, int64_t n,
                     int hd, float* acc) {
  int g = 0;
  for (; g + 3 <= group; g += 3) axpy_keys_heads<T, 3>(w + g * ws, ws, vals, n, hd, acc + g * hd);
  if (group - g == 2) axpy_keys_heads<T, 2>(w + g * ws, ws, vals, n, hd, acc + g * hd);
  if (group - g == 1) axpy_keys_heads<T, 1>(w + g * ws, ws, vals, n, hd, acc + g * hd);
}

}  // namespace

void dot_keys_avx2(DType t, const float* q, int group, const void* const* keys, int64_t n, int hd,
                   float scale, float* s, int64_t ss) {
  if (t == DType::kF16) return dot_keys_group<DType::kF16>(q, group, keys, n, hd, scale, s, ss);
  if (t == DType::kBF16) return dot_keys_group<DType::kBF16>(q, group, keys, n, hd, scale, s, ss);
  return dot_keys_group<DType::kF32>(q, group, keys, n, hd, scale, s, ss);
}

void axpy_keys_avx2(DType t, const float* w, int64_t ws, int group, const void* const* vals,
                    int64_t n, int hd, float* acc) {
  if (t == DType::kF16) return axpy_keys_group<DType::kF16>(w, ws, group, vals, n, hd, acc);
  if (t == DType::kBF16) return axpy_keys_group<DType::kBF16>(w, ws, group, vals, n, hd, acc);
  return axpy_keys_group<DType::kF32>(w, ws, group, vals, n, hd, acc);
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
