// Per-output error bounds of a device matmul against ops::ref::matmul, by the path the CUDA table
// takes (src/ops/cuda_matmul_plan.h), argued from the precision of each path. For one output
// y = sum_k x_k w_k (+ b), with u = 2^-24 (fp32 unit roundoff), S = sum_k |x_k w_k| and the
// weights w_k as ref::dequantize_row gives them:
//   fp32 accumulation in another order: ref's in-order sum and any other order of K rounded
//     products are each within K u S of the exact sum (plus u |y| for the bias add), so
//     |dev - ref| <= (2K + 16) u S + u |y|;
//   int8 activations (decode GEMV of Q8_0..Q5_1): each x_k is replaced by q d (|x_k - q d| <= d/2,
//     d = max|x| / 127 of its 32-block): int8_rounding_bound; the block terms d_w d_x sum(q q)
//     (+ m d_x sum(q)) are rounded products whose magnitudes are bounded by S plus the mins'
//     share P = sum_k 2 |m_b| |x_k| (|d q| <= |w| + |m|): (2K + 16) u (S + P + R) more;
//   fp16 / bf16 activations (GEMM on F16 / BF16 weights): each x_k rounded to 16 bits moves its
//     term by <= 2^-11 (bf16: 2^-8) of |x_k w_k|, or by 2^-25 |w_k| below fp16's normal range;
//   fp16 activations and fp16-dequantized weights (GEMM on quantized weights): two such
//     roundings per term, (2^-10 + 2^-22) S + 2^-24 (sum |x| + sum |w|).
// All far below one wrong weight's share of an output (~S / K) at the K the tests use.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../src/ops/cuda_matmul_plan.h"
#include "tessera/core/dtype.h"
#include "tessera/core/half.h"
#include "test_util.h"

namespace tessera::ops::test {

enum class MatmulBound { kCpuExact, kFp32, kInt8, kHalfX, kBf16X, kHalfXW };

// The bound of the path the CUDA table takes for `rows` rows of a `type` weight.
inline MatmulBound cuda_bound(DType type, int64_t rows) {
  using cuda_plan::MatmulPath;
  switch (cuda_plan::choose_path(type, rows, cuda_plan::build_has_gemm())) {
    case MatmulPath::kGemvInt8:
      return MatmulBound::kInt8;
    case MatmulPath::kGemvF32:
    case MatmulPath::kGemmF32:
      return MatmulBound::kFp32;
    case MatmulPath::kGemmHalf:
      return type == DType::kBF16 ? MatmulBound::kBf16X : MatmulBound::kHalfX;
    case MatmulPath::kGemmDequant:
      return MatmulBound::kHalfXW;
  }
  return MatmulBound::kFp32;
}

// |min| of the 32-element block holding element k of a Q4_1 / Q5_1 row (0 for other types).
inline double block_min(DType type, const uint8_t* row, int64_t k) {
  if (type != DType::kQ4_1 && type != DType::kQ5_1) return 0.0;
  const uint8_t* blk = row + (k / 32) * dtype_info(type).block_bytes;
  uint16_t h = 0;
  std::memcpy(&h, blk + 2, 2);
  return std::fabs(static_cast<double>(fp16_to_f32(h)));
}

// x: one row of activations; w: the weight row dequantized; wq: the same row as stored.
inline double matmul_bound(MatmulBound b, DType type, const float* x, const float* w,
                           const uint8_t* wq, int64_t k, double y) {
  const double u = std::ldexp(1.0, -24), n = 2.0 * static_cast<double>(k) + 16;
  double s = 0, sx = 0, sw = 0, p = 0;
  for (int64_t i = 0; i < k; ++i) {
    s += std::fabs(static_cast<double>(x[i]) * w[i]);
    sx += std::fabs(x[i]);
    sw += std::fabs(w[i]);
  }
  const double tail = u * std::fabs(y) + 1e-6;
  switch (b) {
    case MatmulBound::kCpuExact:  // matmul_test.cpp's observed-error argument
      return 3e-5 * s + 1e-6;
    case MatmulBound::kFp32:
      return n * u * s + tail;
    case MatmulBound::kInt8: {
      for (int64_t i = 0; i < k; ++i) p += 2 * block_min(type, wq, i) * std::fabs(x[i]);
      const double r = int8_rounding_bound(x, w, k);
      return r + n * u * (s + p + r) + tail;
    }
    case MatmulBound::kHalfX:
      return std::ldexp(s, -11) + std::ldexp(sw, -25) + n * u * s * 1.01 + tail;
    case MatmulBound::kBf16X:
      return std::ldexp(s, -8) + n * u * s * 1.01 + tail;
    case MatmulBound::kHalfXW:
      return (std::ldexp(1.0, -10) + std::ldexp(1.0, -22)) * s + u * (sx + sw) + n * u * s * 1.01 +
             tail;
  }
  return 0.0;
}

}  // namespace tessera::ops::test
