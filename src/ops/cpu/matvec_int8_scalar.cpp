// The scalar integer kernel of the int8 dot-product path (int8_dot.h): runs on any CPU, and is the
// baseline the SIMD kernels are tested against. Per block it forms the same exact int32 sum of
// weight quant x activation quant that the SIMD kernels form, then scales it once; only the fp32
// order of the per-block scaling and summing differs between kernels. Holds no state.
#include <cstring>

#include "int8_dot.h"
#include "tessera/core/half.h"

namespace tessera::ops::cpu::detail {
namespace {

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// The quants of one weight block as ints in element order, its scale dw, and its offset term c
// (per unit of activation sum: the block's contribution is dw * dx * (q . a) + c * sx).
void unpack_block(DType t, const uint8_t* blk, int q[32], float& dw, float& c) {
  dw = half_at(blk);
  c = 0.0f;
  const uint8_t* qs = nullptr;
  uint32_t qh = 0;
  switch (t) {
    case DType::kQ8_0:
      for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(blk[2 + i]);
      return;
    case DType::kQ4_0:
      qs = blk + 2;
      c = -8.0f * dw;
      break;
    case DType::kQ4_1:
      qs = blk + 4;
      c = half_at(blk + 2);
      break;
    case DType::kQ5_0:
      std::memcpy(&qh, blk + 2, 4);
      qs = blk + 6;
      c = -16.0f * dw;
      break;
    case DType::kQ5_1:
      c = half_at(blk + 2);
      std::memcpy(&qh, blk + 4, 4);
      qs = blk + 8;
      break;
    default:
      return;
  }
  // Element j < 16 is the low nibble of qs[j], element j + 16 the high one; bit e of qh is the
  // fifth bit of element e (Q5 types; qh is 0 for the Q4 types).
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
  }
}

}  // namespace

void int8_rows_scalar(const Int8Args& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.k / 32;
  const auto bytes = static_cast<size_t>(dtype_info(a.wtype).block_bytes);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = a.w + static_cast<size_t>(n) * a.w_row_bytes;
    float acc[kInt8MaxRows] = {};
    for (int64_t b = 0; b < nb; ++b) {
      int q[32];
      float dw = 0.0f, c = 0.0f;
      unpack_block(a.wtype, row + static_cast<size_t>(b) * bytes, q, dw, c);
      for (int m = 0; m < a.m_count; ++m) {
        const ActBlock& x = a.x[m * nb + b];
        int32_t isum = 0;
        for (int i = 0; i < 32; ++i) isum += q[i] * x.qs[i];
        acc[m] += dw * x.d * static_cast<float>(isum) + c * x.s;
      }
    }
    const float bias = a.bias ? a.bias[n] : 0.0f;
    for (int m = 0; m < a.m_count; ++m) a.y[m * a.ldy + n] = acc[m] + bias;
  }
}

}  // namespace tessera::ops::cpu::detail
