// Reference dequantizers of the K-quants (ggml's dequantize_row_q*_K): the scalar definition the
// AVX2 kernels and the gguf package's numpy dequantizer are checked against. Every product is
// rounded as ggml and gguf-py round it (sub-block scale d*sc first, then d*sc*q - dmin*m), so
// the values match theirs bit for bit. Layout of a 256-element super-block, by type:
//  - Q2_K: 16 sub-blocks of 16; element 128*h + 32*j + l is bits 2j..2j+1 of qs[32h + l] and
//    uses scales[8h + 2j + l/16] (low nibble scale, high nibble min).
//  - Q3_K: low 2 bits as Q2_K; element 32*j + l has its third bit in bit j of hmask[l], and a
//    clear bit means minus 4; sixteen 6-bit scales (kquant::scale_q3_k).
//  - Q4_K / Q5_K: 8 sub-blocks of 32; sub-block 2i / 2i+1 are the low / high nibbles of
//    qs[32i .. 32i+32); Q5_K's fifth bit of element 32*j + l is bit j of qh[l].
//  - Q6_K: element 128*h + 32*j + l: low 4 bits from ql[64h + l + 32*(j%2)] (nibble j/2), high 2
//    bits from bits 2j of qh[32h + l]; minus 32; int8 scale per 16 elements.
#include <cstring>

#include "kquant_layout.h"
#include "tessera/core/error.h"
#include "tessera/core/half.h"

namespace tessera::ops::kquant {
namespace {

void q2_k(const BlockQ2_K& b, float* y) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const uint8_t sm = b.scales[8 * h + 2 * j + l / 16];
        const float dl = d * static_cast<float>(sm & 0x0f);
        const float ml = dmin * static_cast<float>(sm >> 4);
        const int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
        y[128 * h + 32 * j + l] = dl * static_cast<float>(q) - ml;
      }
}

void q3_k(const BlockQ3_K& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const float dl = d * static_cast<float>(scale_q3_k(b.scales, e / 16));
        const int lo = (b.qs[32 * h + l] >> (2 * j)) & 3;
        const int high_clear = ((b.hmask[l] >> (e / 32)) & 1) ^ 1;
        y[e] = dl * static_cast<float>(lo - 4 * high_clear);
      }
}

template <bool kFifthBit, typename Block>
void q45_k(const Block& b, float* y) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int j = 0; j < 8; ++j) {
    int sc = 0, m = 0;
    scale_min_k4(b.scales, j, &sc, &m);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      int q = (b.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
      if constexpr (kFifthBit) q |= ((b.qh[l] >> j) & 1) << 4;
      y[32 * j + l] = dl * static_cast<float>(q) - ml;
    }
  }
}

void q6_k(const BlockQ6_K& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const int lo = (b.ql[64 * h + l + 32 * (j % 2)] >> (4 * (j / 2))) & 0x0f;
        const int hi = (b.qh[32 * h + l] >> (2 * j)) & 3;
        const float dl = d * static_cast<float>(b.scales[e / 16]);
        y[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
      }
}

template <typename Block, void (*Fn)(const Block&, float*)>
void each(const void* src, float* dst, int64_t blocks) {
  // A GGUF file may align its tensors to 1 byte, so the fp16 fields can be misaligned in the
  // mapping; copy each block out instead of casting the pointer.
  Block b;
  for (int64_t i = 0; i < blocks; ++i) {
    std::memcpy(&b, static_cast<const uint8_t*>(src) + i * static_cast<int64_t>(sizeof(Block)),
                sizeof(Block));
    Fn(b, dst + i * kQK_K);
  }
}

}  // namespace

void dequantize(DType type, const void* src, float* dst, int64_t blocks) {
  switch (type) {
    case DType::kQ2_K:
      return each<BlockQ2_K, q2_k>(src, dst, blocks);
    case DType::kQ3_K:
      return each<BlockQ3_K, q3_k>(src, dst, blocks);
    case DType::kQ4_K:
      return each<BlockQ4_K, q45_k<false, BlockQ4_K>>(src, dst, blocks);
    case DType::kQ5_K:
      return each<BlockQ5_K, q45_k<true, BlockQ5_K>>(src, dst, blocks);
    case DType::kQ6_K:
      return each<BlockQ6_K, q6_k>(src, dst, blocks);
    default:
      break;
  }
  fail(ErrorCode::kInvalidArgument, "kquant::dequantize: ", dtype_name(type), " is no K-quant");
}

}  // namespace tessera::ops::kquant
