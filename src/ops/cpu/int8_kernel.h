// Private to the int8 dot-product kernels (int8_dot.h): the SIMD row kernel, written once and
// compiled once per ISA. Include it only from a matvec_int8_*.cpp file, after that file's target
// pragma and after it has defined `dot_u8s8(u, s)`: the int32x8 sums of 4 adjacent products of
// unsigned bytes u and signed bytes s (maddubs + madd on AVX2, vpdpbusd with VNNI). Everything is
// in an anonymous namespace, so each file gets its own copy for its own ISA. No state.
#pragma once

#include <cstring>

#include "avx2_common.h"
#include "int8_dot.h"
#include "row_count.h"

namespace tessera::ops::cpu::detail {
namespace {

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 32 bytes, byte e 0xFF when bit e of the 4 bytes at p is set (the Q5 types' fifth bits).
inline __m256i bytes_from_bits(const uint8_t* p) {
  uint32_t x32;
  std::memcpy(&x32, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101,
                                         0x0000000000000000);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
  // Every bit but bit (e mod 8) set, so the byte is all ones only when that bit is set.
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// The 32 unsigned nibbles of a 4-bit block in element order (low nibbles are elements 0-15).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(raw, m4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
  return _mm256_set_m128i(hi, lo);
}

// Block layout of each weight type: bytes, where the quants start, whether there is a minimum
// (m after d), a fifth-bit word, and the offset per unit of quant when there is no minimum.
template <DType T>
struct Layout;
template <>
struct Layout<DType::kQ8_0> {
  static constexpr size_t kBytes = 34, kQs = 2;
};
template <>
struct Layout<DType::kQ4_0> {
  static constexpr size_t kBytes = 18, kQs = 2;
};
template <>
struct Layout<DType::kQ4_1> {
  static constexpr size_t kBytes = 20, kQs = 4;
};
template <>
struct Layout<DType::kQ5_0> {
  static constexpr size_t kBytes = 22, kQs = 6, kQh = 2;
};
template <>
struct Layout<DType::kQ5_1> {
  static constexpr size_t kBytes = 24, kQs = 8, kQh = 4;
};

template <DType T, int M>
void rows_t(const Int8Args& a, int64_t n0, int64_t n1) {
  using L = Layout<T>;
  constexpr bool kMin = T == DType::kQ4_1 || T == DType::kQ5_1;
  constexpr bool kFive = T == DType::kQ5_0 || T == DType::kQ5_1;
  constexpr float kOffset = T == DType::kQ4_0 ? -8.0f : T == DType::kQ5_0 ? -16.0f : 0.0f;
  const int64_t nb = a.k / 32;
  const __m256i m10 = _mm256_set1_epi8(0x10);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    __m256 acc[M];
    float off[M];
    for (int m = 0; m < M; ++m) {
      acc[m] = _mm256_setzero_ps();
      off[m] = 0.0f;
    }
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + static_cast<size_t>(b) * L::kBytes;
      if (b + 4 < nb) _mm_prefetch(reinterpret_cast<const char*>(blk + 4 * L::kBytes), _MM_HINT_T0);
      const float dw = half_at(blk);
      // Unsigned weight quants u, and for Q8_0 the signs moved onto the activations instead.
      __m256i u;
      if constexpr (T == DType::kQ8_0) {
        u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L::kQs));
      } else {
        u = unpack_nibbles(blk + L::kQs);
        if constexpr (kFive)
          u = _mm256_or_si256(u, _mm256_and_si256(bytes_from_bits(blk + L::kQh), m10));
      }
      float c = kOffset * dw;
      if constexpr (kMin) c = half_at(blk + 2);
      for (int m = 0; m < M; ++m) {
        const ActBlock& x = a.x[m * nb + b];
        __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
        __m256i p;
        if constexpr (T == DType::kQ8_0) {
          // |w| (128 for -128 reads as unsigned 128) against x with w's sign: same products.
          p = dot_u8s8(_mm256_abs_epi8(u), _mm256_sign_epi8(s, u));
        } else {
          p = dot_u8s8(u, s);
        }
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * x.d), acc[m]);
        if constexpr (T != DType::kQ8_0) off[m] += c * x.s;
      }
    }
    const float bias = a.bias ? a.bias[n] : 0.0f;
    for (int m = 0; m < M; ++m) a.y[m * a.ldy + n] = hsum256(acc[m]) + off[m] + bias;
  }
}

template <int M>
void rows_m(const Int8Args& a, int64_t n0, int64_t n1) {
  switch (a.wtype) {
    case DType::kQ8_0:
      return rows_t<DType::kQ8_0, M>(a, n0, n1);
    case DType::kQ4_0:
      return rows_t<DType::kQ4_0, M>(a, n0, n1);
    case DType::kQ4_1:
      return rows_t<DType::kQ4_1, M>(a, n0, n1);
    case DType::kQ5_0:
      return rows_t<DType::kQ5_0, M>(a, n0, n1);
    case DType::kQ5_1:
      return rows_t<DType::kQ5_1, M>(a, n0, n1);
    default:
      return;  // int8_weight_type() was checked by the caller
  }
}

inline void int8_rows_impl(const Int8Args& a, int64_t n0, int64_t n1) {
  static_assert(kInt8MaxRows == 8);
  with_row_count(a.m_count, [&](auto m) { rows_m<decltype(m)::value>(a, n0, n1); });
}

}  // namespace
}  // namespace tessera::ops::cpu::detail
