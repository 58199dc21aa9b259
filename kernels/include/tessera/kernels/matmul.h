// CUDA launchers of the matmul paths y[M, N] = x[M, K] * w[N, K]^T (+ bias[N]), w in any stored
// weight format (weight_ops.h). Two paths; the caller (ops' CUDA table) picks one by M:
//  - decode GEMV (M <= kGemvMaxRows): one warp per output column n, kGemvWarps columns per CTA;
//    each warp streams its weight row once through shared memory (128-bit loads when the row is
//    16-byte aligned) and dequantizes in registers. The 32-element block formats (Q8_0, Q4_0,
//    Q4_1, Q5_0, Q5_1) take int8 activations quantized once per call (launch_quantize_q8) and
//    use __dp4a; the plain and K-quant formats multiply fp32 activations, fp32 accumulation.
//  - prefill GEMM (larger M): cuBLAS, driven by the caller; the helpers here cast activations to
//    fp16/bf16, dequantize a tile of weight rows to fp16 and add the bias.
// Launchers only: raw device pointers, sizes, a stream; they allocate nothing and keep no state.
// Each returns cudaErrorInvalidValue for arguments it cannot serve (documented per launcher) and
// otherwise the launch's cudaGetLastError().
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tessera/kernels/weight_ops.h"

namespace tessera::kernels {

// Rows of x one GEMV launch serves: each lane keeps one fp32 accumulator per row, and the weight
// row is read once for all of them (see ops' cuda_matmul_plan.h for why the GEMM takes over above).
inline constexpr int kGemvMaxRows = 8;
inline constexpr int kGemvWarps = 4;  // output columns (warps) per CTA

// Whether the GEMV of `type` reads int8 activations (quantized by launch_quantize_q8).
bool gemv_uses_int8(WeightType type);

// x [M, K] fp32 -> int8 blocks of 32 (q8_1-style): qs [M, K] (row m at qs + m * K), ds [M, K / 32]
// as (d, sum of the block's q) with d = max|x| / 127 and q = round(x / d). Needs K % 32 == 0 and
// qs 16-byte aligned (the GEMV reads 32-byte blocks with two 128-bit loads).
cudaError_t launch_quantize_q8(int8_t* qs, float2* ds, const float* x, int M, int64_t K,
                               cudaStream_t stream);
// launch_quantize_q8 of the rows launch_rms_norm(x, weight, eps) would write (its arithmetic and
// reduction, so the same bits as the two launches), without writing them: RMSNorm fused into the
// next GEMV's input.
cudaError_t launch_rms_norm_quantize_q8(int8_t* qs, float2* ds, const float* x,
                                        const float* weight, float eps, int M, int64_t K,
                                        cudaStream_t stream);
// launch_quantize_q8 of silu(gate) * up (launch_silu_mul's arithmetic): SiLU x up fused into the
// down projection's input.
cudaError_t launch_silu_mul_quantize_q8(int8_t* qs, float2* ds, const float* gate, const float* up,
                                        int M, int64_t K, cudaStream_t stream);

struct GemvArgs {
  float* y = nullptr;        // [M, N]
  const float* x = nullptr;  // [M, K] fp32 (read by the fp32 GEMVs)
  const void* w = nullptr;   // N rows of row_bytes
  WeightType type = WeightType::kF32;
  size_t row_bytes = 0;
  const float* bias = nullptr;  // [N] or null
  int M = 0, N = 0;
  int64_t K = 0;
  // 128-bit weight loads: needs w and row_bytes 16-byte aligned (the caller checks, since it
  // knows the tensor's offset); otherwise byte loads, same results.
  bool vector_loads = false;
  const int8_t* xq = nullptr;  // launch_quantize_q8's output, for gemv_uses_int8(type)
  const float2* xds = nullptr;
  // y += x w^T + bias instead of y = ... (the residual add in the epilogue: y's old value plus
  // the column's (sum + bias), the same value as a separate add after the GEMV).
  bool accumulate = false;
};
// Needs 1 <= M <= kGemvMaxRows, K a multiple of the type's block, xq/xds for the int8 types.
cudaError_t launch_gemv(const GemvArgs& args, cudaStream_t stream);

// out[i] = x[i] rounded to fp16 (bf16 when `bf16`), i < n; out is __half or __nv_bfloat16.
cudaError_t launch_cast_activations(void* out, bool bf16, const float* x, long n,
                                    cudaStream_t stream);
// out [rows, K] fp16 = rows `first_row ..` of w (row_bytes each), dequantized (ops::ref's
// values, rounded to nearest fp16).
cudaError_t launch_dequantize_f16(__half* out, const void* w, WeightType type, size_t row_bytes,
                                  int64_t first_row, int rows, int64_t K, cudaStream_t stream);
// y[m, n] += bias[n] for y [M, N].
cudaError_t launch_add_bias(float* y, const float* bias, int M, int N, cudaStream_t stream);

}  // namespace tessera::kernels
