// The 8-row interleaved weight layouts (packed.h): packing and unpacking, the scalar integer
// kernel (the exactness baseline every SIMD kernel must match bitwise) and the choice of kernel.
// No state.
#include "packed.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "../kquant_layout.h"
#include "tessera/core/error.h"
#include "tessera/core/half.h"

namespace tessera::ops::cpu::detail {
namespace {

// Where a base block's fields go in a packed block: fp16 fields (d, then m for Q4_1) as 8-lane
// arrays, then the quants in 4-byte slices, 8 rows per slice.
struct Geometry {
  size_t base_block;  // bytes of one base block
  int halves;         // fp16 fields per block (d; d and m)
  int qh_bytes;       // the fifth-bit word (4) of the Q5 types, after the fp16 fields
  int quant_bytes;    // quant bytes per base block (16 or 32)
  // Where the quant slices start in a packed block.
  size_t packed_quants() const { return 16 * static_cast<size_t>(halves) + 8 * qh_bytes; }
};

Geometry geometry(DType base) {
  switch (base) {
    case DType::kQ4_0:
      return {18, 1, 0, 16};
    case DType::kQ4_1:
      return {20, 2, 0, 16};
    case DType::kQ8_0:
      return {34, 1, 0, 32};
    case DType::kQ5_0:
      return {22, 1, 4, 16};
    case DType::kQ5_1:
      return {24, 2, 4, 16};
    default:
      fail(ErrorCode::kInvalidArgument, "no packed layout for ", dtype_name(base));
  }
}

// n bytes from base_at to packed_at (packing) or back: every move_* below copies both ways with
// the same offsets, so one function serves pack_rows and unpack_rows.
void move_bytes(uint8_t* base_at, uint8_t* packed_at, size_t n, bool to_packed) {
  if (to_packed)
    std::memcpy(packed_at, base_at, n);
  else
    std::memcpy(base_at, packed_at, n);
}

// Copies between base block `blk` of row r (0..7) and packed block `pk`; to_packed picks the
// direction.
void move_block(const Geometry& g, int r, uint8_t* blk, uint8_t* pk, bool to_packed) {
  auto mv = [&](uint8_t* base_at, uint8_t* packed_at, size_t n) {
    move_bytes(base_at, packed_at, n, to_packed);
  };
  for (int h = 0; h < g.halves; ++h) mv(blk + 2 * h, pk + 16 * h + 2 * r, 2);
  if (g.qh_bytes) {  // the file's qh word <-> the slice-ordered fifth bits (packed.h)
    uint8_t* at = pk + 16 * g.halves + 4 * r;
    uint32_t qh = 0;
    if (to_packed) {
      std::memcpy(&qh, blk + 2 * g.halves, 4);
      for (int e = 0; e < 4; ++e) {
        uint8_t byte = 0;
        for (int j = 0; j < 4; ++j)
          byte = static_cast<uint8_t>(byte | ((qh >> (4 * j + e)) & 1u) << j |
                                      ((qh >> (16 + 4 * j + e)) & 1u) << (4 + j));
        at[e] = byte;
      }
    } else {
      for (int e = 0; e < 4; ++e)
        for (int j = 0; j < 4; ++j)
          qh |= ((at[e] >> j) & 1u) << (4 * j + e) | ((at[e] >> (4 + j)) & 1u) << (16 + 4 * j + e);
      std::memcpy(blk + 2 * g.halves, &qh, 4);
    }
  }
  uint8_t* qs = blk + 2 * g.halves + g.qh_bytes;
  uint8_t* pq = pk + g.packed_quants();
  for (int j = 0; j < g.quant_bytes / 4; ++j) mv(qs + 4 * j, pq + 32 * j + 4 * r, 4);
}

// Q4_K and Q5_K (K4, K5 below): the 6-bit scale/min pairs are re-encoded one byte each, so a
// register load gives 8 rows' scales of a sub-block; the 12-byte encoding is a bijection on 96
// bits, so unpacking restores the file's bytes exactly. Q5_K's qh bytes move in 4-byte slices.
template <bool kFive>
void move_k45(int r, uint8_t* blk, uint8_t* pk, bool to_packed) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  // Both layouts put d, dmin, sc and m at the same offsets.
  const auto& L = k4x8::kLayout;
  static_assert(k5x8::kLayout.sc == L.sc && k5x8::kLayout.mn == L.mn);
  if (to_packed) {
    std::memcpy(pk + L.d + 2 * r, blk + offsetof(Block, d), 2);
    std::memcpy(pk + L.dmin + 2 * r, blk + offsetof(Block, dmin), 2);
    for (int j = 0; j < 8; ++j) {
      int sc = 0, mn = 0;
      kquant::scale_min_k4(blk + offsetof(Block, scales), j, &sc, &mn);
      pk[L.sc + 8 * j + r] = static_cast<uint8_t>(sc);
      pk[L.mn + 8 * j + r] = static_cast<uint8_t>(mn);
    }
  } else {
    std::memcpy(blk + offsetof(Block, d), pk + L.d + 2 * r, 2);
    std::memcpy(blk + offsetof(Block, dmin), pk + L.dmin + 2 * r, 2);
    uint8_t* s = blk + offsetof(Block, scales);
    auto sc = [&](int j) { return pk[L.sc + 8 * j + r]; };
    auto mn = [&](int j) { return pk[L.mn + 8 * j + r]; };
    for (int j = 0; j < 4; ++j) {
      s[j] = static_cast<uint8_t>((sc(j) & 63) | ((sc(j + 4) >> 4) << 6));
      s[j + 4] = static_cast<uint8_t>((mn(j) & 63) | ((mn(j + 4) >> 4) << 6));
      s[j + 8] = static_cast<uint8_t>((sc(j + 4) & 15) | ((mn(j + 4) & 15) << 4));
    }
  }
  auto mv = [&](uint8_t* base_at, uint8_t* packed_at) {
    move_bytes(base_at, packed_at, 4, to_packed);
  };
  uint8_t* qs = blk + offsetof(Block, qs);
  for (int i = 0; i < 128; i += 4)
    mv(qs + i, pk + (kFive ? k5x8::quant_at(i, r) : k4x8::quant_at(i, r)));
  if constexpr (kFive)
    for (int l = 0; l < 32; l += 4) mv(blk + offsetof(BlockQ5_K, qh) + l, pk + k5x8::qh_at(l, r));
}

// Q6_K (K6): d, the 16 int8 sub-block scales, and ql / qh in the slices of k6x8::slice_at; the
// same bytes, rearranged.
void move_k6(int r, uint8_t* blk, uint8_t* pk, bool to_packed) {
  const auto& L = k6x8::kLayout;
  auto mv = [&](uint8_t* base_at, uint8_t* packed_at, size_t n) {
    move_bytes(base_at, packed_at, n, to_packed);
  };
  mv(blk + offsetof(BlockQ6_K, d), pk + L.d + 2 * r, 2);
  for (int j = 0; j < 16; ++j) mv(blk + offsetof(BlockQ6_K, scales) + j, pk + L.sc + 8 * j + r, 1);
  uint8_t* ql = blk + offsetof(BlockQ6_K, ql);
  uint8_t* qh = blk + offsetof(BlockQ6_K, qh);
  for (int n = 0; n < 2; ++n)
    for (int s = 0; s < 8; ++s) {
      mv(ql + 64 * n + 4 * s, pk + k6x8::slice_at(n, s, 0, r), 4);
      mv(ql + 64 * n + 32 + 4 * s, pk + k6x8::slice_at(n, s, 1, r), 4);
      mv(qh + 32 * n + 4 * s, pk + k6x8::slice_at(n, s, 2, r), 4);
    }
}

// The K-quants: super-block by super-block, row by row, through `move`.
template <typename Move>
void repack_k(DType base, DType packed, size_t packed_bytes, const uint8_t* src, int64_t rows,
              int64_t k, uint8_t* dst, bool to_packed, Move move) {
  const size_t rb = row_bytes(base, k), prb = row_bytes(packed, k);
  const size_t bb = static_cast<size_t>(dtype_info(base).block_bytes);
  const int64_t nb = k / kQK_K;
  for (int64_t grp = 0; grp < rows / kPackRows; ++grp)
    for (int64_t b = 0; b < nb; ++b)
      for (int r = 0; r < kPackRows; ++r) {
        const size_t base_at =
            static_cast<size_t>(grp * kPackRows + r) * rb + static_cast<size_t>(b) * bb;
        const size_t pk_at =
            static_cast<size_t>(grp) * kPackRows * prb + static_cast<size_t>(b) * packed_bytes;
        if (to_packed)
          move(r, const_cast<uint8_t*>(src) + base_at, dst + pk_at, true);
        else
          move(r, dst + base_at, const_cast<uint8_t*>(src) + pk_at, false);
      }
}

void repack(DType base, const uint8_t* src, int64_t rows, int64_t k, uint8_t* dst, bool to_packed) {
  if (rows % kPackRows != 0 || k % dtype_info(base).block_elems != 0)
    fail(ErrorCode::kInvalidArgument, "packing ", rows, " x ", k, ": rows must be a multiple of ",
         kPackRows, " and columns of ", dtype_info(base).block_elems);
  if (base == DType::kQ4_K)
    return repack_k(base, DType::kQ4_Kx8, k4x8::kLayout.bytes, src, rows, k, dst, to_packed,
                    move_k45<false>);
  if (base == DType::kQ5_K)
    return repack_k(base, DType::kQ5_Kx8, k5x8::kLayout.bytes, src, rows, k, dst, to_packed,
                    move_k45<true>);
  if (base == DType::kQ6_K)
    return repack_k(base, DType::kQ6_Kx8, k6x8::kLayout.bytes, src, rows, k, dst, to_packed,
                    move_k6);
  const Geometry g = geometry(base);
  const size_t rb = row_bytes(base, k);
  const int64_t nb = k / 32;
  for (int64_t grp = 0; grp < rows / kPackRows; ++grp) {
    for (int64_t b = 0; b < nb; ++b) {
      const size_t pk_at = static_cast<size_t>(grp) * kPackRows * rb +
                           static_cast<size_t>(b) * kPackRows * g.base_block;
      for (int r = 0; r < kPackRows; ++r) {
        const size_t blk_at =
            static_cast<size_t>(grp * kPackRows + r) * rb + static_cast<size_t>(b) * g.base_block;
        if (to_packed)
          move_block(g, r, const_cast<uint8_t*>(src) + blk_at, dst + pk_at, true);
        else
          move_block(g, r, dst + blk_at, const_cast<uint8_t*>(src) + pk_at, false);
      }
    }
  }
}

}  // namespace

DType packed_type(DType base) {
  switch (base) {
    case DType::kQ4_0:
      return DType::kQ4_0x8;
    case DType::kQ4_1:
      return DType::kQ4_1x8;
    case DType::kQ8_0:
      return DType::kQ8_0x8;
    case DType::kQ5_0:
      return DType::kQ5_0x8;
    case DType::kQ5_1:
      return DType::kQ5_1x8;
    case DType::kQ4_K:
      return DType::kQ4_Kx8;
    case DType::kQ5_K:
      return DType::kQ5_Kx8;
    case DType::kQ6_K:
      return DType::kQ6_Kx8;
    default:
      return base;
  }
}

size_t packed_block_bytes(DType packed) {
  return static_cast<size_t>(kPackRows) * static_cast<size_t>(dtype_info(packed).block_bytes);
}

void pack_rows(DType base, const uint8_t* src, int64_t rows, int64_t k, uint8_t* dst) {
  repack(base, src, rows, k, dst, true);
}
void unpack_rows(DType base, const uint8_t* src, int64_t rows, int64_t k, uint8_t* dst) {
  repack(base, src, rows, k, dst, false);
}

namespace {

// The loop of the scalar K-quant packed kernels: for each 8-row group, activation row m and
// weight row r, block(pk, r, xb, acc, off) adds one super-block's terms (xb: its 8 activation
// blocks of row m); y = acc - off [+ bias], as the SIMD kernels' kquant_groups.
template <size_t kBytes, typename Block>
void kquant_groups_scalar(const Int8Args& a, int64_t n0, int64_t n1, Block&& block) {
  const int64_t nb = a.k / kQK_K, nblocks = a.k / 32;
  for (int64_t n = n0; n < n1; n += kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    for (int m = 0; m < a.m_count; ++m)
      for (int r = 0; r < kPackRows; ++r) {
        float acc = 0.0f, off = 0.0f;
        for (int64_t b = 0; b < nb; ++b)
          block(grp + static_cast<size_t>(b) * kBytes, r, a.x + m * nblocks + b * 8, acc, off);
        float y = acc - off;
        if (a.bias) y += a.bias[n + r];
        a.y[m * a.ldy + n + r] = y;
      }
  }
}

float half_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// The scalar Q4_Kx8 / Q5_Kx8 kernel, in the SIMD kernel's order: per 32-element sub-block j the
// exact int32 S, then acc = fma(S, (d sc_j) dx, acc), off = fma(dmin m_j, sx, off).
template <bool kFive>
void k45_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr size_t kBytes = kFive ? k5x8::kLayout.bytes : k4x8::kLayout.bytes;
  kquant_groups_scalar<kBytes>(
      a, n0, n1, [](const uint8_t* pk, int r, const ActBlock* xb, float& acc, float& off) {
        constexpr const auto& L = k4x8::kLayout;  // d, dmin, sc, m: the same in both layouts
        const float d = half_float(pk + L.d + 2 * r), dmin = half_float(pk + L.dmin + 2 * r);
        for (int j = 0; j < 8; ++j) {
          const ActBlock& x = xb[j];
          int32_t s = 0;
          for (int e = 0; e < 32; ++e) {
            const int i = 32 * (j / 2) + e;
            const uint8_t byte = pk[kFive ? k5x8::quant_at(i, r) : k4x8::quant_at(i, r)];
            int q = j % 2 ? byte >> 4 : byte & 15;
            if constexpr (kFive) q |= ((pk[k5x8::qh_at(e, r)] >> j) & 1) << 4;
            s += q * x.qs[e];
          }
          acc = std::fma(static_cast<float>(s), d * static_cast<float>(pk[L.sc + 8 * j + r]) * x.d,
                         acc);
          off = std::fma(dmin * static_cast<float>(pk[L.mn + 8 * j + r]), x.s, off);
        }
      });
}

// The scalar Q6_Kx8 kernel, in the SIMD kernel's order (packed.h); no minimum (off stays 0).
void k6_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1) {
  constexpr const auto& L = k6x8::kLayout;
  kquant_groups_scalar<L.bytes>(
      a, n0, n1, [](const uint8_t* pk, int r, const ActBlock* xb, float& acc, float&) {
        const float d = half_float(pk + L.d + 2 * r);
        for (int half = 0; half < 2; ++half)
          for (int sg = 0; sg < 2; ++sg)
            for (int t = 0; t < 4; ++t) {
              const int j = 8 * half + 2 * t + sg;
              const ActBlock& x = xb[4 * half + t];
              int32_t s = 0;
              for (int e = 0; e < 16; ++e) {
                const int l = 16 * sg + e, sl = l / 4, at = l % 4;
                const uint8_t lo = pk[k6x8::slice_at(half, sl, t % 2, r) + at];
                const uint8_t hb = pk[k6x8::slice_at(half, sl, 2, r) + at];
                const int q = (t < 2 ? lo & 15 : lo >> 4) | (((hb >> (2 * t)) & 3) << 4);
                s += (q - 32) * x.qs[l];
              }
              const auto sc = static_cast<int8_t>(pk[L.sc + 8 * j + r]);
              acc = std::fma(static_cast<float>(s), d * static_cast<float>(sc) * x.d, acc);
            }
      });
}

}  // namespace

void packed_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1) {
  if (a.wtype == DType::kQ4_Kx8) return k45_rows_scalar<false>(a, n0, n1);
  if (a.wtype == DType::kQ5_Kx8) return k45_rows_scalar<true>(a, n0, n1);
  if (a.wtype == DType::kQ6_Kx8) return k6_rows_scalar(a, n0, n1);
  const DType base = packed_base(a.wtype);
  const Geometry g = geometry(base);
  const size_t pb = packed_block_bytes(a.wtype);
  const int64_t nb = a.k / 32;
  for (int64_t n = n0; n < n1; n += kPackRows) {
    const uint8_t* grp = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    for (int m = 0; m < a.m_count; ++m) {
      for (int r = 0; r < kPackRows; ++r) {
        float acc = 0.0f, off = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* pk = grp + static_cast<size_t>(b) * pb;
          const uint8_t* pq = pk + g.packed_quants();
          const ActBlock& x = a.x[m * nb + b];
          uint16_t h;
          std::memcpy(&h, pk + 2 * r, 2);
          const float dw = fp16_to_f32(h);
          const uint8_t* fifth = g.qh_bytes ? pk + 16 * g.halves + 4 * r : nullptr;
          int32_t s = 0;
          for (int i = 0; i < g.quant_bytes; ++i) {
            const uint8_t byte = pq[32 * (i / 4) + 4 * r + i % 4];
            if (base == DType::kQ8_0) {
              s += static_cast<int8_t>(byte) * x.qs[i];
            } else {
              // Fifth bits (Q5): byte i % 4 of the row's four, bit i / 4 (low), 4 + i / 4 (high).
              const int f = fifth ? fifth[i % 4] : 0, j = i / 4;
              const int lo = (byte & 15) | ((f >> j) & 1) << 4;
              const int hi = (byte >> 4) | ((f >> (4 + j)) & 1) << 4;
              s += lo * x.qs[i] + hi * x.qs[i + 16];
            }
          }
          acc = std::fma(static_cast<float>(s), dw * x.d, acc);
          if (base == DType::kQ4_0) off = std::fma(dw * -8.0f, x.s, off);
          if (base == DType::kQ5_0) off = std::fma(dw * -16.0f, x.s, off);
          if (g.halves == 2) {  // Q4_1, Q5_1: the block minimum
            std::memcpy(&h, pk + 16 + 2 * r, 2);
            off = std::fma(fp16_to_f32(h), x.s, off);
          }
        }
        float y = acc + off;
        if (a.bias) y += a.bias[n + r];
        a.y[m * a.ldy + n + r] = y;
      }
    }
  }
}

void packed_rows(Int8Isa isa, const Int8Args& a, int64_t n0, int64_t n1) {
  switch (isa) {
    case Int8Isa::kAmx:
      return packed_rows_amx(a, n0, n1);
    case Int8Isa::kAvx512Vnni:
      return packed_rows_avx512vnni(a, n0, n1);
    case Int8Isa::kAvxVnni:
      return packed_rows_avxvnni(a, n0, n1);
    case Int8Isa::kAvx2:
      return packed_rows_avx2(a, n0, n1);
    case Int8Isa::kScalar:
      break;
  }
  packed_rows_scalar(a, n0, n1);
}

}  // namespace tessera::ops::cpu::detail
