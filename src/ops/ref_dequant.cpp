// Reference dequantizers: the scalar definition of every weight format (formats.md §2; ggml's
// dequantize_row_*); the K-quants live in ref_dequant_k.cpp. Nibbles are not interleaved: byte j
// holds element j (low) and j+16 (high).
#include <cstring>

#include "kquant_layout.h"
#include "tessera/core/error.h"
#include "tessera/core/half.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::ref {
namespace {

constexpr int kQK = 32;

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  if (n % dtype_info(type).block_elems != 0)
    fail(ErrorCode::kInvalidArgument, "dequantize_row: ", n, " elements is not a multiple of the ",
         dtype_name(type), " block");
  const int64_t nb = n / kQK;
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < nb; ++b) {
        const auto& blk = static_cast<const BlockQ8_0*>(src)[b];
        const float d = fp16_to_f32(blk.d);
        for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = static_cast<float>(blk.qs[j]) * d;
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < nb; ++b) {
        const auto& blk = static_cast<const BlockQ4_0*>(src)[b];
        const float d = fp16_to_f32(blk.d);
        for (int j = 0; j < kQK / 2; ++j) {
          dst[b * kQK + j] = static_cast<float>((blk.qs[j] & 0x0f) - 8) * d;
          dst[b * kQK + j + 16] = static_cast<float>((blk.qs[j] >> 4) - 8) * d;
        }
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < nb; ++b) {
        const auto& blk = static_cast<const BlockQ4_1*>(src)[b];
        const float d = fp16_to_f32(blk.d), m = fp16_to_f32(blk.m);
        for (int j = 0; j < kQK / 2; ++j) {
          dst[b * kQK + j] = static_cast<float>(blk.qs[j] & 0x0f) * d + m;
          dst[b * kQK + j + 16] = static_cast<float>(blk.qs[j] >> 4) * d + m;
        }
      }
      return;
    case DType::kQ5_0:
      for (int64_t b = 0; b < nb; ++b) {
        const auto& blk = static_cast<const BlockQ5_0*>(src)[b];
        const float d = fp16_to_f32(blk.d);
        const uint32_t qh = load_qh(blk.qh);
        for (int j = 0; j < kQK / 2; ++j) {
          const int q0 = (blk.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
          const int q1 = (blk.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
          dst[b * kQK + j] = static_cast<float>(q0 - 16) * d;
          dst[b * kQK + j + 16] = static_cast<float>(q1 - 16) * d;
        }
      }
      return;
    case DType::kQ5_1:
      for (int64_t b = 0; b < nb; ++b) {
        const auto& blk = static_cast<const BlockQ5_1*>(src)[b];
        const float d = fp16_to_f32(blk.d), m = fp16_to_f32(blk.m);
        const uint32_t qh = load_qh(blk.qh);
        for (int j = 0; j < kQK / 2; ++j) {
          const int q0 = (blk.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
          const int q1 = (blk.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
          dst[b * kQK + j] = static_cast<float>(q0) * d + m;
          dst[b * kQK + j + 16] = static_cast<float>(q1) * d + m;
        }
      }
      return;
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return kquant::dequantize(type, src, dst, n / kQK_K);
    case DType::kI32:
    case DType::kQ4_0x8:  // a packed row is spread over its group of 8 (cpu/packed.h)
    case DType::kQ4_1x8:
    case DType::kQ8_0x8:
    case DType::kQ5_0x8:
    case DType::kQ5_1x8:
    case DType::kQ4_Kx8:
    case DType::kQ5_Kx8:
    case DType::kQ6_Kx8:
      break;
  }
  fail(ErrorCode::kUnsupported, "dequantize_row: cannot dequantize ", dtype_name(type));
}

}  // namespace tessera::ops::ref
