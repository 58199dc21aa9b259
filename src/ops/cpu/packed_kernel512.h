// Private to matvec_int8_avx512vnni.cpp: the packed integer kernel (packed.h) for
// Q4_0x8 / Q4_1x8 / Q5_0x8 / Q5_1x8 / Q8_0x8 on 512-bit registers, two 8-row groups at once:
// lanes 0-7 are the rows of group g, lanes 8-15 those of group g + 1 (the next 8 x row_bytes
// bytes), so one vpdpbusd does the work of two 256-bit ones. Why: prefill is bound by the
// kernel's instructions per weight slice (each activation row costs two broadcasts and two
// vpdpbusd per slice), and a 512-bit register halves them per weight; batch-1 decode reads the
// same bytes as before. Every lane does the 256-bit kernel's fp32 operations in the same order
// (packed.h's arithmetic), so the results are bitwise the same. Include after the file's target
// pragma (AVX-512 F, BW, VL, VNNI) and after packed_kernel.h. No state.
#pragma once

#include <cstring>
#include <type_traits>

#include "packed_kernel.h"

namespace tessera::ops::cpu::detail {
namespace {

// 32 bytes at p (group g's) in the low half, 32 at p + stride (group g + 1's) in the high half.
inline __m512i load_pair(const uint8_t* p, size_t stride) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + stride));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// The 8 fp16 values at p and the 8 at p + stride as 16 floats.
inline __m512 cvtph_pair(const uint8_t* p, size_t stride) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride));
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

inline __m512i bcast4_512(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The 512-bit forms of fifth_lo / fifth_hi (packed_kernel.h).
inline __m512i fifth_lo512(__m512i fh, int j) {
  return _mm512_and_si512(_mm512_slli_epi16(fh, static_cast<unsigned>(4 - j)),
                          _mm512_set1_epi8(0x10));
}
inline __m512i fifth_hi512(__m512i fh, int j) {
  return _mm512_and_si512(_mm512_srli_epi16(fh, static_cast<unsigned>(j)), _mm512_set1_epi8(0x10));
}

// Slice j (0..3) of a pair of 4-bit (kFive: 5-bit, fifth bits fh) blocks as unsigned quants,
// one dword per weight row: lo = elements 4j..4j+3, hi = elements 16 + 4j..16 + 4j + 3. Shared
// with the AMX kernel, whose B tile rows these are.
template <bool kFive>
inline void unpack_pair(const uint8_t* q, size_t stride, __m512i fh, int j, __m512i& lo,
                        __m512i& hi) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i w = load_pair(q + 32 * j, stride);
  lo = _mm512_and_si512(w, m4);
  hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
  if constexpr (kFive) {
    lo = _mm512_or_si512(lo, fifth_lo512(fh, j));
    hi = _mm512_or_si512(hi, fifth_hi512(fh, j));
  }
}

// Rows [n0, n1) with (n1 - n0) % 16 == 0, M activation rows sharing each unpacked slice.
template <DType T, int M>
void packed_pair_t(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr bool kFour = T != DType::kQ8_0x8;
  constexpr bool kFive = T == DType::kQ5_0x8 || T == DType::kQ5_1x8;
  constexpr bool kMin = T == DType::kQ4_1x8 || T == DType::kQ5_1x8;
  constexpr size_t kQh = kMin ? 32 : 16;
  constexpr size_t kQuants = kQh + (kFive ? 32 : 0);
  constexpr size_t kBlock = kQuants + (kFour ? 128 : 256);
  constexpr size_t kAhead = kPrefetchAhead;
  const int64_t nb = a.k / 32;
  const size_t stride = static_cast<size_t>(kPackRows) * a.w_row_bytes;  // group g -> g + 1
  for (int64_t n = n0; n < n1; n += 2 * kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    __m512 acc[M], off[M];
    for (int m = 0; m < M; ++m) acc[m] = off[m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = grp + static_cast<size_t>(b) * kBlock;
      const uint8_t* q = blk + kQuants;
      for (size_t l = 0; l < kBlock; l += 64) {  // both groups' streams, as packed_t does one
        _mm_prefetch(reinterpret_cast<const char*>(blk + kAhead + l), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(blk + stride + kAhead + l), _MM_HINT_T0);
      }
      const __m512 dw = cvtph_pair(blk, stride);
      __m512i isum[M];
      for (int m = 0; m < M; ++m) isum[m] = _mm512_setzero_si512();
      if constexpr (kFour) {
        __m512i qh = _mm512_setzero_si512();
        if constexpr (kFive) qh = load_pair(blk + kQh, stride);
        for (int j = 0; j < 4; ++j) {
          __m512i lo, hi;
          unpack_pair<kFive>(q, stride, qh, j, lo, hi);
          for (int m = 0; m < M; ++m) {
            const int8_t* xq = a.x[m * nb + b].qs;
            isum[m] = _mm512_dpbusd_epi32(isum[m], lo, bcast4_512(xq + 4 * j));
            isum[m] = _mm512_dpbusd_epi32(isum[m], hi, bcast4_512(xq + 16 + 4 * j));
          }
        }
      } else {
        for (int j = 0; j < 8; ++j) {
          const __m512i w = load_pair(q + 32 * j, stride);
          const __m512i aw = _mm512_abs_epi8(w);
          const __mmask64 neg = _mm512_movepi8_mask(w);
          for (int m = 0; m < M; ++m) {
            // x with w's sign (AVX-512 has no vpsignb): -x where w < 0. Where w == 0, |w| = 0
            // makes the product 0 as sign_epi8's zero would; the int8 activations are in
            // [-127, 127], so -x never wraps.
            const __m512i x = bcast4_512(a.x[m * nb + b].qs + 4 * j);
            const __m512i xs = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
            isum[m] = _mm512_dpbusd_epi32(isum[m], aw, xs);
          }
        }
      }
      __m512 c = _mm512_setzero_ps();
      if constexpr (T == DType::kQ4_0x8) c = _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f));
      if constexpr (T == DType::kQ5_0x8) c = _mm512_mul_ps(dw, _mm512_set1_ps(-16.0f));
      if constexpr (kMin) c = cvtph_pair(blk + 16, stride);
      for (int m = 0; m < M; ++m) {
        const ActBlock& x = a.x[m * nb + b];
        acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[m]),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(x.d)), acc[m]);
        if constexpr (kFour) off[m] = _mm512_fmadd_ps(c, _mm512_set1_ps(x.s), off[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      __m512 y = _mm512_add_ps(acc[m], off[m]);
      if (a.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(a.bias + n));
      _mm512_storeu_ps(a.y + m * a.ldy + n, y);
    }
  }
}

template <DType T>
void packed_pair_rows(const Int8Args& a, int64_t n0, int64_t n1) {
  in_row_groups<8>(
      a, [&](auto m, const Int8Args& s) { packed_pair_t<T, decltype(m)::value>(s, n0, n1); });
}

// f(std::integral_constant<DType, T>{}) for the packed types with a two-group kernel (Q4_0x8,
// Q4_1x8, Q5_0x8, Q5_1x8, Q8_0x8; the 512-bit one here, the AMX one); false for the others.
template <typename F>
bool with_pair_type(DType t, F&& f) {
  switch (t) {
    case DType::kQ4_0x8:
      return f(std::integral_constant<DType, DType::kQ4_0x8>{}), true;
    case DType::kQ4_1x8:
      return f(std::integral_constant<DType, DType::kQ4_1x8>{}), true;
    case DType::kQ8_0x8:
      return f(std::integral_constant<DType, DType::kQ8_0x8>{}), true;
    case DType::kQ5_0x8:
      return f(std::integral_constant<DType, DType::kQ5_0x8>{}), true;
    case DType::kQ5_1x8:
      return f(std::integral_constant<DType, DType::kQ5_1x8>{}), true;
    default:
      return false;
  }
}

// packed_rows_impl with the 512-bit kernel over whole pairs of groups where the type has one; a
// last odd group, and the K-quants, take the 256-bit kernels.
inline void packed_rows_512_impl(const Int8Args& a, int64_t n0, int64_t n1) {
  const int64_t pairs_end = n0 + (n1 - n0) / (2 * kPackRows) * (2 * kPackRows);
  if (pairs_end > n0 && !with_pair_type(a.wtype, [&](auto t) {
        packed_pair_rows<decltype(t)::value>(a, n0, pairs_end);
      }))
    return packed_rows_impl(a, n0, n1);
  if (pairs_end < n1) packed_rows_impl(a, pairs_end, n1);
}

}  // namespace
}  // namespace tessera::ops::cpu::detail
