// Row quantizers, round-to-nearest exactly as ggml's quantize_row_*_ref (ggml-quants.c), so the
// blocks they make are the ones a GGUF converter would write. Used by tests, benchmarks and tools.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tessera/core/error.h"
#include "tessera/core/half.h"
#include "tessera/ops/ops.h"

namespace tessera::ops {
namespace {

constexpr int kQK = 32;

// The element with the largest magnitude, sign kept (ggml's Q4_0 / Q5_0 scale source).
float signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void quantize_q8_0(const float* x, BlockQ8_0* y) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_fp16(d);
  for (int j = 0; j < kQK; ++j) y->qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
}

void quantize_q4_0(const float* x, BlockQ4_0* y) {
  const float d = signed_absmax(x) / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_fp16(d);
  for (int j = 0; j < kQK / 2; ++j) {
    const auto lo =
        std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(x[j] * id + 8.5f)));
    const auto hi =
        std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
    y->qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void quantize_q4_1(const float* x, BlockQ4_1* y) {
  float min = x[0], max = x[0];
  for (int j = 1; j < kQK; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_fp16(d);
  y->m = f32_to_fp16(min);
  for (int j = 0; j < kQK / 2; ++j) {
    const auto lo = std::min<uint8_t>(15, static_cast<uint8_t>((x[j] - min) * id + 0.5f));
    const auto hi = std::min<uint8_t>(15, static_cast<uint8_t>((x[j + 16] - min) * id + 0.5f));
    y->qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void quantize_q5_0(const float* x, BlockQ5_0* y) {
  const float d = signed_absmax(x) / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_fp16(d);
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const auto q0 =
        std::min<uint8_t>(31, static_cast<uint8_t>(static_cast<int8_t>(x[j] * id + 16.5f)));
    const auto q1 =
        std::min<uint8_t>(31, static_cast<uint8_t>(static_cast<int8_t>(x[j + 16] * id + 16.5f)));
    y->qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(y->qh, &qh, sizeof(qh));
}

void quantize_q5_1(const float* x, BlockQ5_1* y) {
  float min = x[0], max = x[0];
  for (int j = 1; j < kQK; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_fp16(d);
  y->m = f32_to_fp16(min);
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const auto q0 = std::min<uint8_t>(31, static_cast<uint8_t>((x[j] - min) * id + 0.5f));
    const auto q1 = std::min<uint8_t>(31, static_cast<uint8_t>((x[j + 16] - min) * id + 0.5f));
    y->qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(y->qh, &qh, sizeof(qh));
}

template <typename Block, void (*Fn)(const float*, Block*)>
void quantize_blocks(const float* src, void* dst, int64_t n) {
  auto* out = static_cast<Block*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) Fn(src + b * kQK, out + b);
}

}  // namespace

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  if (n % dtype_info(type).block_elems != 0)
    fail(ErrorCode::kInvalidArgument, "quantize_row: ", n, " elements is not a multiple of the ",
         dtype_name(type), " block");
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_fp16(src[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
      return;
    case DType::kQ8_0:
      return quantize_blocks<BlockQ8_0, quantize_q8_0>(src, dst, n);
    case DType::kQ4_0:
      return quantize_blocks<BlockQ4_0, quantize_q4_0>(src, dst, n);
    case DType::kQ4_1:
      return quantize_blocks<BlockQ4_1, quantize_q4_1>(src, dst, n);
    case DType::kQ5_0:
      return quantize_blocks<BlockQ5_0, quantize_q5_0>(src, dst, n);
    case DType::kQ5_1:
      return quantize_blocks<BlockQ5_1, quantize_q5_1>(src, dst, n);
    case DType::kQ2_K:  // K-quants are read from files, never made here
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
    case DType::kI32:
    case DType::kQ4_0x8:  // packed layouts are made from whole row groups (pack_weight)
    case DType::kQ4_1x8:
    case DType::kQ8_0x8:
    case DType::kQ5_0x8:
    case DType::kQ5_1x8:
    case DType::kQ4_Kx8:
    case DType::kQ5_Kx8:
    case DType::kQ6_Kx8:
      break;
  }
  fail(ErrorCode::kUnsupported, "quantize_row: cannot quantize to ", dtype_name(type));
}

}  // namespace tessera::ops
