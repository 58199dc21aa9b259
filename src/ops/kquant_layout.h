// Private to the ops: how the K-quants' packed sub-block scales unpack (ggml-common.h layouts),
// the definition used by the reference dequantizers (ref_dequant_k.cpp) and the packing of
// Q4_K / Q5_K (cpu/packed.cpp); the AVX2 kernels (kquant_avx2.cpp) unpack the Q3_K / Q4_K / Q5_K
// scales in vector registers instead, and tests compare the two. Pure functions; no state.
#pragma once

#include <cstdint>

#include "tessera/core/dtype.h"

namespace tessera::ops::kquant {

// Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins in 12 bytes. Sub-blocks 0-3 keep theirs
// in the low 6 bits of bytes 0-3 (scale) and 4-7 (min); sub-blocks 4-7 take their low 4 bits
// from the nibbles of bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-7.
inline void scale_min_k4(const uint8_t* s, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K: sixteen 6-bit scales stored with an offset of 32. Low 4 bits: nibble (i / 8) of byte
// i % 8; high 2 bits: bits 2 * (i / 4) of byte 8 + i % 4.
inline int scale_q3_k(const uint8_t* s, int i) {
  const int lo = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
  const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// Scalar dequantization of `blocks` super-blocks of a K-quant type (the formats' definition).
void dequantize(DType type, const void* src, float* dst, int64_t blocks);

}  // namespace tessera::ops::kquant
