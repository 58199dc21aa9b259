// Private to the packed integer kernels (packed.h): the SIMD kernel over 8 interleaved weight
// rows, written once and compiled once per ISA. Include it only from a matvec_int8_*.cpp file,
// after that file's target pragma and after it has defined, in this namespace:
//   acc_u8s8(acc, u, s)  acc + the int32x8 sums of 4 adjacent products of unsigned bytes u and
//                        signed bytes s (maddubs + madd + add on AVX2, one vpdpbusd with VNNI)
//   kPrefetchAhead       how many bytes ahead of the row groups being read to prefetch (a
//                        chunk's groups are one contiguous stream; the best distance differs
//                        by machine, so each ISA's file names its own; 0: no prefetches)
//   kInt16Sums           true where maddubs results are better summed in int16 before one madd
//                        (AVX2; exact: 8 of a 4-bit block, |sum| <= 8 x 2 x 15 x 127 = 30480;
//                        4 at a time of a 5-bit one, <= 4 x 2 x 31 x 127 = 31496)
// Lane r of every vector is weight row n + r. Everything is in an anonymous namespace, so each
// file gets its own copy for its own ISA. No state.
#pragma once

#include <algorithm>
#include <cstring>

#include "avx2_common.h"
#include "packed.h"
#include "row_count.h"

namespace tessera::ops::cpu::detail {
namespace {

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// The Q5 types' fifth bits of slice j at 0x10 of each byte (packed.h's fh layout): bit j of each
// fh byte for the low nibbles, bit 4 + j for the high ones. 16-bit shifts by at most 4 bring no
// bit of the neighbouring byte to bit 4.
inline __m256i fifth_lo(__m256i fh, int j) {
  return _mm256_and_si256(_mm256_slli_epi16(fh, 4 - j), _mm256_set1_epi8(0x10));
}
inline __m256i fifth_hi(__m256i fh, int j) {
  return _mm256_and_si256(_mm256_srli_epi16(fh, j), _mm256_set1_epi8(0x10));
}

// Up to 4 activation rows share each unpacked weight slice (more would spill registers).
template <DType T, int M>
void packed_t(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr bool kFour = T != DType::kQ8_0x8;  // 4-bit quants (plus a fifth bit for Q5)
  constexpr bool kFive = T == DType::kQ5_0x8 || T == DType::kQ5_1x8;
  constexpr bool kMin = T == DType::kQ4_1x8 || T == DType::kQ5_1x8;
  // The fp16 arrays (d; d and m) come first, then the Q5 types' fifth-bit bytes (fh), then the
  // quants.
  constexpr size_t kQh = kMin ? 32 : 16;
  constexpr size_t kQuants = kQh + (kFive ? 32 : 0);
  constexpr size_t kBlock = kQuants + (kFour ? 128 : 256);
  constexpr size_t kAhead = kPrefetchAhead;
  const int64_t nb = a.k / 32;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t n = n0; n < n1; n += kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    __m256 acc[M], off[M];
    for (int m = 0; m < M; ++m) acc[m] = off[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = grp + static_cast<size_t>(b) * kBlock;
      const uint8_t* q = blk + kQuants;
      // A chunk's row groups are one contiguous stream; ask for the lines kAhead bytes on (a
      // prefetch past the end of the tensor is only a hint and never faults).
      if constexpr (kAhead > 0)
        for (size_t l = 0; l < kBlock; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(blk + kAhead + l), _MM_HINT_T0);
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
      __m256i isum[M];
      for (int m = 0; m < M; ++m) isum[m] = _mm256_setzero_si256();
      if constexpr (kFour) {
        __m256i s16[M];
        if constexpr (kInt16Sums)
          for (int m = 0; m < M; ++m) s16[m] = _mm256_setzero_si256();
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kFive) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQh));
        for (int j = 0; j < 4; ++j) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
          __m256i lo = _mm256_and_si256(w, m4);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
          if constexpr (kFive) {
            lo = _mm256_or_si256(lo, fifth_lo(qh, j));
            hi = _mm256_or_si256(hi, fifth_hi(qh, j));
          }
          for (int m = 0; m < M; ++m) {
            const int8_t* xq = a.x[m * nb + b].qs;
            const __m256i xl = bcast4(xq + 4 * j), xh = bcast4(xq + 16 + 4 * j);
            if constexpr (kInt16Sums) {
              s16[m] = _mm256_add_epi16(s16[m], _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl),
                                                                 _mm256_maddubs_epi16(hi, xh)));
            } else {
              isum[m] = acc_u8s8(acc_u8s8(isum[m], lo, xl), hi, xh);
            }
          }
          if constexpr (kInt16Sums && kFive) {
            if (j % 2 == 1) {  // 5-bit products: at most 4 maddubs results per int16 sum
              for (int m = 0; m < M; ++m) {
                isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(s16[m], ones16));
                s16[m] = _mm256_setzero_si256();
              }
            }
          }
        }
        if constexpr (kInt16Sums && !kFive)
          for (int m = 0; m < M; ++m) isum[m] = _mm256_madd_epi16(s16[m], ones16);
      } else {
        for (int j = 0; j < 8; ++j) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
          const __m256i aw = _mm256_abs_epi8(w);
          for (int m = 0; m < M; ++m) {
            // |w| (128 for -128 reads as unsigned 128) against x with w's sign: same products.
            const __m256i xs = _mm256_sign_epi8(bcast4(a.x[m * nb + b].qs + 4 * j), w);
            isum[m] = acc_u8s8(isum[m], aw, xs);
          }
        }
      }
      __m256 c = _mm256_setzero_ps();
      if constexpr (T == DType::kQ4_0x8) c = _mm256_mul_ps(dw, _mm256_set1_ps(-8.0f));
      if constexpr (T == DType::kQ5_0x8) c = _mm256_mul_ps(dw, _mm256_set1_ps(-16.0f));
      if constexpr (kMin)
        c = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16)));
      for (int m = 0; m < M; ++m) {
        const ActBlock& x = a.x[m * nb + b];
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[m]),
                                 _mm256_mul_ps(dw, _mm256_set1_ps(x.d)), acc[m]);
        if constexpr (kFour) off[m] = _mm256_fmadd_ps(c, _mm256_set1_ps(x.s), off[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      __m256 y = _mm256_add_ps(acc[m], off[m]);
      if (a.bias) y = _mm256_add_ps(y, _mm256_loadu_ps(a.bias + n));
      _mm256_storeu_ps(a.y + m * a.ldy + n, y);
    }
  }
}

// The loop the K-quant packed kernels share: for every 8-row group in [n0, n1) and each of its
// super-blocks (kBytes each, prefetched 1 KiB on), block(pk, xb, acc, off) adds that super-block's
// terms (xb: its 8 activation blocks of row 0; row m's at xb + m * k / 32); then
// y = acc - off [+ bias] (off stays zero for the types without minima, which leaves acc as it is).
template <int M, size_t kBytes, typename Block>
void kquant_groups(const Int8Args& a, int64_t n0, int64_t n1, Block&& block) {
  constexpr size_t kAhead = kPrefetchAhead;
  const int64_t nb = a.k / kQK_K;
  for (int64_t n = n0; n < n1; n += kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    __m256 acc[M], off[M];
    for (int m = 0; m < M; ++m) acc[m] = off[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* pk = grp + static_cast<size_t>(b) * kBytes;
      if constexpr (kAhead > 0)
        for (size_t l = 0; l < kBytes; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(pk + kAhead + l), _MM_HINT_T0);
      block(pk, a.x + b * 8, acc, off);
    }
    for (int m = 0; m < M; ++m) {
      __m256 y = _mm256_sub_ps(acc[m], off[m]);
      if (a.bias) y = _mm256_add_ps(y, _mm256_loadu_ps(a.bias + n));
      _mm256_storeu_ps(a.y + m * a.ldy + n, y);
    }
  }
}

// Bit `bit` (0..7) of each byte at 0x10. 16-bit shifts by at most 4 left or 3 right bring no bit
// of the neighbouring byte to bit 4.
inline __m256i bit_at_4(__m256i v, int bit) {
  const __m256i s = bit <= 4 ? _mm256_slli_epi16(v, 4 - bit) : _mm256_srli_epi16(v, bit - 4);
  return _mm256_and_si256(s, _mm256_set1_epi8(0x10));
}

// Q4_Kx8 and Q5_Kx8 (packed.h): per 32-byte group g of a super-block, 8 slices feed two sums,
// sub-block 2g (low nibbles) and 2g + 1 (high nibbles), each then scaled by its 8 rows' d sc and
// dmin m. Q5_Kx8 ORs in the fifth bits from its qh slice (bits 2g and 2g + 1 of it); its products
// (q <= 31) allow only 4 maddubs results per int16 sum (4 x 2 x 31 x 127 = 31496), so on AVX2
// the sums go to int32 after every 4 slices.
template <int M, bool kFive>
void packed_k45_t(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr const auto& L = k4x8::kLayout;  // d, dmin, sc, m: the same in both layouts
  constexpr size_t kQs = kFive ? k5x8::kLayout.qs : L.qs;
  constexpr size_t kBytes = kFive ? k5x8::kLayout.bytes : L.bytes;
  constexpr bool kSplit = kFive && kInt16Sums;  // int16 sums moved to int32 every 4 slices
  const int64_t nblocks = a.k / 32;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i ones16 = _mm256_set1_epi16(1);
  kquant_groups<M, kBytes>(
      a, n0, n1, [&](const uint8_t* pk, const ActBlock* xb, __m256* acc, __m256* off) {
        const __m256 dv =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pk + L.d)));
        const __m256 dmv =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pk + L.dmin)));
        for (int g = 0; g < 4; ++g) {
          __m256i s[2][M], s32[2][M];
          for (int m = 0; m < M; ++m)
            s[0][m] = s[1][m] = s32[0][m] = s32[1][m] = _mm256_setzero_si256();
          for (int sl = 0; sl < 8; ++sl) {
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                pk + kQs + 256 * static_cast<size_t>(g) + 32 * sl));
            __m256i lo = _mm256_and_si256(w, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            if constexpr (kFive) {
              const __m256i qh = _mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(pk + k5x8::kLayout.qh + 32 * sl));
              lo = _mm256_or_si256(lo, bit_at_4(qh, 2 * g));
              hi = _mm256_or_si256(hi, bit_at_4(qh, 2 * g + 1));
            }
            for (int m = 0; m < M; ++m) {
              const __m256i xl = bcast4(xb[m * nblocks + 2 * g].qs + 4 * sl);
              const __m256i xh = bcast4(xb[m * nblocks + 2 * g + 1].qs + 4 * sl);
              if constexpr (kInt16Sums) {
                s[0][m] = _mm256_add_epi16(s[0][m], _mm256_maddubs_epi16(lo, xl));
                s[1][m] = _mm256_add_epi16(s[1][m], _mm256_maddubs_epi16(hi, xh));
              } else {
                s[0][m] = acc_u8s8(s[0][m], lo, xl);
                s[1][m] = acc_u8s8(s[1][m], hi, xh);
              }
            }
            if constexpr (kSplit) {
              if (sl % 4 == 3) {
                for (int m = 0; m < M; ++m)
                  for (int h = 0; h < 2; ++h) {
                    s32[h][m] = _mm256_add_epi32(s32[h][m], _mm256_madd_epi16(s[h][m], ones16));
                    s[h][m] = _mm256_setzero_si256();
                  }
              }
            }
          }
          for (int half = 0; half < 2; ++half) {
            const int j = 2 * g + half;
            const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pk + L.sc + 8 * j))));
            const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pk + L.mn + 8 * j))));
            const __m256 scale = _mm256_mul_ps(dv, sc), minimum = _mm256_mul_ps(dmv, mn);
            for (int m = 0; m < M; ++m) {
              const ActBlock& x = xb[m * nblocks + j];
              __m256i sum = s[half][m];
              if constexpr (kSplit)
                sum = s32[half][m];
              else if constexpr (kInt16Sums)
                sum = _mm256_madd_epi16(sum, ones16);
              acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum),
                                       _mm256_mul_ps(scale, _mm256_set1_ps(x.d)), acc[m]);
              off[m] = _mm256_fmadd_ps(minimum, _mm256_set1_ps(x.s), off[m]);
            }
          }
        }
      });
}

// Q6_Kx8 (packed.h): per 128-element half and 16-element group of slices, each slice's three
// registers give 4 elements of the half's four quarters (q in 0..63, value q - 32, multiplied as
// |v| against x with v's sign: pairs <= 2 x 32 x 127, 4 slices <= 32512 in int16 on AVX2).
template <int M>
void packed_k6_t(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr const auto& L = k6x8::kLayout;
  const int64_t nblocks = a.k / 32;
  const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
  const __m256i c32 = _mm256_set1_epi8(32), ones16 = _mm256_set1_epi16(1);
  kquant_groups<M, L.bytes>(
      a, n0, n1, [&](const uint8_t* pk, const ActBlock* xb, __m256* acc, __m256*) {
        const __m256 dv =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pk + L.d)));
        for (int half = 0; half < 2; ++half) {
          for (int sg = 0; sg < 2; ++sg) {
            __m256i sum[M][4];
            for (int m = 0; m < M; ++m)
              for (int t = 0; t < 4; ++t) sum[m][t] = _mm256_setzero_si256();
            for (int s4 = 0; s4 < 4; ++s4) {
              const int sl = 4 * sg + s4;
              auto reg = [&](int r) {
                return _mm256_loadu_si256(
                    reinterpret_cast<const __m256i*>(pk + k6x8::slice_at(half, sl, r, 0)));
              };
              const __m256i A = reg(0), B = reg(1), H = reg(2);
              __m256i q[4];
              q[0] = _mm256_or_si256(_mm256_and_si256(A, m4),
                                     _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
              q[1] = _mm256_or_si256(_mm256_and_si256(B, m4),
                                     _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
              q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                                     _mm256_and_si256(H, m30));
              q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                     _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
              for (int t = 0; t < 4; ++t) {
                const __m256i v = _mm256_sub_epi8(q[t], c32);
                const __m256i av = _mm256_abs_epi8(v);
                for (int m = 0; m < M; ++m) {
                  const __m256i xs =
                      _mm256_sign_epi8(bcast4(xb[m * nblocks + 4 * half + t].qs + 4 * sl), v);
                  if constexpr (kInt16Sums)
                    sum[m][t] = _mm256_add_epi16(sum[m][t], _mm256_maddubs_epi16(av, xs));
                  else
                    sum[m][t] = acc_u8s8(sum[m][t], av, xs);
                }
              }
            }
            for (int t = 0; t < 4; ++t) {
              const int j = 8 * half + 2 * t + sg;
              const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                  _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pk + L.sc + 8 * j))));
              const __m256 scale = _mm256_mul_ps(dv, sc);
              for (int m = 0; m < M; ++m) {
                const ActBlock& x = xb[m * nblocks + 4 * half + t];
                __m256i st = sum[m][t];
                if constexpr (kInt16Sums) st = _mm256_madd_epi16(st, ones16);
                acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(st),
                                         _mm256_mul_ps(scale, _mm256_set1_ps(x.d)), acc[m]);
              }
            }
          }
        }
      });
}

// kernel(RowCount<m>, args) over the activation rows in groups of at most G (the most one kernel
// instance holds in registers), each group's args pointing at its rows.
template <int G, typename Kernel>
void in_row_groups(const Int8Args& a, Kernel&& kernel) {
  const int64_t nblocks = a.k / 32;
  for (int m0 = 0; m0 < a.m_count; m0 += G) {
    Int8Args s = a;
    s.x = a.x + m0 * nblocks;
    s.y = a.y + m0 * a.ldy;
    s.m_count = std::min(G, a.m_count - m0);
    with_row_count(s.m_count, [&](auto m) {
      if constexpr (decltype(m)::value <= G) kernel(m, s);
    });
  }
}

template <DType T>
void packed_type_rows(const Int8Args& a, int64_t n0, int64_t n1) {
  if constexpr (T == DType::kQ4_Kx8 || T == DType::kQ5_Kx8) {
    in_row_groups<2>(a, [&](auto m, const Int8Args& s) {
      packed_k45_t<decltype(m)::value, T == DType::kQ5_Kx8>(s, n0, n1);
    });
  } else if constexpr (T == DType::kQ6_Kx8) {
    in_row_groups<2>(
        a, [&](auto m, const Int8Args& s) { packed_k6_t<decltype(m)::value>(s, n0, n1); });
  } else {
    in_row_groups<4>(
        a, [&](auto m, const Int8Args& s) { packed_t<T, decltype(m)::value>(s, n0, n1); });
  }
}

// Requests the first kPrefetchAhead bytes of rows [n0, n1) at once. The kernels' loops prefetch
// kPrefetchAhead bytes ahead of where they read, so without this the start of every call (a pool
// chunk; at decode a thread's first chunk of each op) is read by demand misses one block after
// the other; a chunk that continues the previous one finds its lines already requested.
inline void prefetch_start(const Int8Args& a, int64_t n0, int64_t n1) {
  const uint8_t* p = a.w + static_cast<size_t>(n0) * a.w_row_bytes;
  const size_t bytes =
      std::min(kPrefetchAhead, static_cast<size_t>(n1 - n0) * static_cast<size_t>(a.w_row_bytes));
  for (size_t l = 0; l < bytes; l += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + l), _MM_HINT_T0);
}

inline void packed_rows_impl(const Int8Args& a, int64_t n0, int64_t n1) {
  switch (a.wtype) {
    case DType::kQ4_0x8:
      return packed_type_rows<DType::kQ4_0x8>(a, n0, n1);
    case DType::kQ4_1x8:
      return packed_type_rows<DType::kQ4_1x8>(a, n0, n1);
    case DType::kQ8_0x8:
      return packed_type_rows<DType::kQ8_0x8>(a, n0, n1);
    case DType::kQ5_0x8:
      return packed_type_rows<DType::kQ5_0x8>(a, n0, n1);
    case DType::kQ5_1x8:
      return packed_type_rows<DType::kQ5_1x8>(a, n0, n1);
    case DType::kQ4_Kx8:
      return packed_type_rows<DType::kQ4_Kx8>(a, n0, n1);
    case DType::kQ5_Kx8:
      return packed_type_rows<DType::kQ5_Kx8>(a, n0, n1);
    case DType::kQ6_Kx8:
      return packed_type_rows<DType::kQ6_Kx8>(a, n0, n1);
    default:
      return;  // the caller checked is_packed()
  }
}

}  // namespace
}  // namespace tessera::ops::cpu::detail
