// Private to the CPU ops: weights repacked at load so the integer matmul streams 8 rows at once
// (the packed dtypes of core/dtype.h: kQ4_0x8 .. kQ5_1x8, kQ4_Kx8, kQ5_Kx8, kQ6_Kx8). Why:
// the row-major kernels (int8_kernel.h) spend ~16 instructions per 32-weight block of one row
// (unpack, one int8 dot, an int-to-float conversion, a scale built and broadcast, an FMA, the
// minimum term), which keeps batch-1 decode at half the memory bandwidth. With 8 rows
// interleaved, one 256-bit register holds a 4-byte slice of each of the 8 rows, the activation's
// matching 4 bytes are broadcast to every lane, and a block's 8 scales are one load and one
// conversion: per row-block ~6 instructions.
//
// Layout of a packed tensor [N, K] (N % 8 == 0): row group g (rows 8g..8g+7) occupies the same
// 8 x row_bytes bytes as in the base layout, as K/32 packed blocks, each the 8 rows' block b:
//   Q4_0x8 (144 B): d[8] (fp16), then for j = 0..3 the 8 rows' qs bytes 4j..4j+3 (32 B each)
//   Q4_1x8 (160 B): d[8], m[8] (fp16), then the qs slices as Q4_0x8
//   Q8_0x8 (272 B): d[8], then for j = 0..7 the 8 rows' qs bytes 4j..4j+3
//   Q5_0x8 (176 B): d[8], fh[8] (each row's 32 fifth bits as 4 bytes, below), then the qs slices
//   Q5_1x8 (192 B): d[8], m[8], fh[8], then the qs slices
// In a 4/5-bit block byte i holds element i (low nibble) and element i + 16 (high nibble), so the
// slice j of a row carries elements 4j..4j+3 and 4j+16..4j+19. The fifth bits are reordered to
// match the slices (a bijection of the file's qh word, undone by unpacking): bit j of a row's fh
// byte e is element 4j + e's (the low nibble of slice j's byte e), bit 4 + j element 16 + 4j + e's.
// So the fifth bits of slice j sit at the same byte as its quants, and one shift and one mask put
// them at 0x10 (qh's bit order took a shuffle, a compare and two masks per nibble half).
//
// Arithmetic (every kernel, scalar and SIMD, does the same fp32 operations in the same order, so
// they agree bitwise): per (activation row m, weight row n, block b) the exact int32 sum
// S = sum(q_i a_i) over the block's 32 elements, then
//   acc = fma(float(S), dw * dx, acc);  off = fma(c, sx, off);  y = (acc + off) [+ bias]
// with c = -8 dw (Q4_0), -16 dw (Q5_0), the block minimum m (Q4_1, Q5_1), 0 (Q8_0). Results
// therefore do not depend on how rows are grouped or split (cpu::exact_row_split holds). They
// differ from the row-major int8 kernel's only by fp32 rounding (that one scales 8 partial sums
// per block separately).
//
// Q4_Kx8 (1184 B per 8 rows x 256 elements, 148 per row against Q4_K's 144): d[8], dmin[8]
// (fp16), sc[8 sub-blocks][8 rows], m[8][8] (the 6-bit scales and mins, a byte each), then the
// 128 quant bytes of each row in 4-byte slices: slice s of 32-byte group g holds bytes
// 32g + 4s..+3, whose low nibbles are elements 4s..4s+3 of sub-block 2g and high nibbles those of
// sub-block 2g + 1. Per 32-element sub-block j the exact S as above, then
//   acc = fma(float(S), (d sc_j) dx, acc);  off = fma(dmin m_j, sx, off);  y = acc - off [+ bias].
//
// Q5_Kx8 (1440 B per 8 rows x 256 elements, 180 per row against Q5_K's 176): Q4_Kx8's d, dmin,
// sc and m, then the fifth bits, then Q4_Kx8's quant slices. The fifth bits come as 8 slices of
// the rows' qh bytes 4s..4s+3 (slice s of row r at qh + 32 s + 4 r): bit j of qh byte l is that of
// element l of sub-block j, so the qh slice s lines up byte for byte with quant slice s of every
// 32-byte group g (elements 4s..4s+3 of sub-blocks 2g and 2g + 1), whose fifth bits are bits 2g
// and 2g + 1 of it. Arithmetic as Q4_Kx8's, with q in 0..31.
//
// Q6_Kx8 (1680 B per 8 rows x 256 elements, Q6_K's 210 per row): d[8] (fp16), sc[16 sub-blocks]
// [8 rows] (int8), then per 128-element half n and slice s (0..7) three registers: the rows'
// ql bytes 64n + 4s..+3, ql bytes 64n + 32 + 4s..+3 and qh bytes 32n + 4s..+3. Slice s gives 4
// elements (l = 4s..4s+3) of each of the half's four 32-element quarters t (ql low / high
// nibbles with 2 bits of qh each, q in 0..63, value q - 32), sub-block j = 8n + 2t + s / 4 (of 16
// elements). Per sub-block, in the order n, s / 4, t: S = sum((q - 32) a) exact, then
// acc = fma(float(S), (d sc_j) dx, acc); y = acc [+ bias].
// State: none.
#pragma once

#include <cstddef>
#include <cstdint>

#include "int8_dot.h"
#include "tessera/core/dtype.h"

namespace tessera::ops::cpu::detail {

// Q4_Kx8's byte offsets within one packed super-block of 8 rows, and where quant byte i (0..127,
// as in BlockQ4_K::qs) of row r sits.
namespace k4x8 {
struct Layout {
  size_t d = 0, dmin = 16, sc = 32, mn = 96, qs = 160, bytes = 1184;
};
inline constexpr Layout kLayout{};
inline constexpr size_t quant_at(int i, int r) {
  return kLayout.qs + 256 * static_cast<size_t>(i / 32) + 32 * static_cast<size_t>(i % 32 / 4) +
         4 * static_cast<size_t>(r) + static_cast<size_t>(i % 4);
}
static_assert(kLayout.bytes == kPackRows * 148);
}  // namespace k4x8

// Q5_Kx8's offsets: Q4_Kx8's fields, the fifth-bit slices, then the quant slices.
namespace k5x8 {
struct Layout {
  size_t d = 0, dmin = 16, sc = 32, mn = 96, qh = 160, qs = 416, bytes = 1440;
};
inline constexpr Layout kLayout{};
// Quant byte i (0..127, as in BlockQ5_K::qs) of row r, and qh byte l (0..31) of row r.
inline constexpr size_t quant_at(int i, int r) {
  return kLayout.qs + k4x8::quant_at(i, r) - k4x8::kLayout.qs;
}
inline constexpr size_t qh_at(int l, int r) {
  return kLayout.qh + 32 * static_cast<size_t>(l / 4) + 4 * static_cast<size_t>(r) +
         static_cast<size_t>(l % 4);
}
static_assert(kLayout.bytes == kPackRows * 180 && quant_at(127, 7) + 1 == kLayout.bytes);
static_assert(qh_at(31, 7) + 1 == kLayout.qs);
}  // namespace k5x8

// Q6_Kx8's offsets: the three slice registers of (half n, slice s), and the sub-block scales.
namespace k6x8 {
struct Layout {
  size_t d = 0, sc = 16, qs = 144, bytes = 1680;
};
inline constexpr Layout kLayout{};
// reg: 0 = ql[64n + 4s..], 1 = ql[64n + 32 + 4s..], 2 = qh[32n + 4s..]; row r's 4 bytes.
inline constexpr size_t slice_at(int n, int s, int reg, int r) {
  return kLayout.qs + 96 * static_cast<size_t>(8 * n + s) + 32 * static_cast<size_t>(reg) +
         4 * static_cast<size_t>(r);
}
static_assert(kLayout.bytes == kPackRows * 210 && slice_at(1, 7, 2, 8) == kLayout.bytes);
}  // namespace k6x8

// The packed type of `base` (kQ4_0 -> kQ4_0x8 ...), or `base` itself when it has none.
DType packed_type(DType base);
// Bytes of one packed block (8 rows x one 32-element block).
size_t packed_block_bytes(DType packed);

// Rearranges `rows` (a multiple of 8) base-layout rows of `k` elements at `src` into `dst` (the
// same size, Q4_K: 148/144 of it, Q5_K: 180/176), and back.
void pack_rows(DType base, const uint8_t* src, int64_t rows, int64_t k, uint8_t* dst);
void unpack_rows(DType base, const uint8_t* src, int64_t rows, int64_t k, uint8_t* dst);

// y[m, n] for n in [n0, n1) (multiples of 8), m < a.m_count (<= kInt8MaxRows), a.wtype packed,
// a.w the tensor's data (row group g at a.w + 8 g w_row_bytes).
void packed_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1);
void packed_rows_avx2(const Int8Args& a, int64_t n0, int64_t n1);
void packed_rows_avxvnni(const Int8Args& a, int64_t n0, int64_t n1);
void packed_rows_avx512vnni(const Int8Args& a, int64_t n0, int64_t n1);
void packed_rows_amx(const Int8Args& a, int64_t n0, int64_t n1);
void packed_rows(Int8Isa isa, const Int8Args& a, int64_t n0, int64_t n1);

}  // namespace tessera::ops::cpu::detail
