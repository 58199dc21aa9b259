// The element-wise helpers of the prefill GEMM path (matmul.h): activations cast to the GEMM's
// 16-bit input type, weight rows dequantized to fp16 tiles (the same per-element decode as the
// embeddings, decode.cuh, then one rounding to fp16), and the bias epilogue. cuBLAS itself is
// driven by the caller (ops' CUDA table), which owns the handle and the scratch.
#include <cuda_bf16.h>

#include <algorithm>

#include "decode.cuh"
#include "tessera/kernels/matmul.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 256;
constexpr long kMaxBlocks = 65535;

unsigned grid_for(long items) {
  return static_cast<unsigned>(std::min(std::max(items, 1L), kMaxBlocks));
}

template <bool kBf16>
__global__ void cast_kernel(void* out, const float* x, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    if constexpr (kBf16)
      static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(x[i]);
    else
      static_cast<__half*>(out)[i] = __float2half_rn(x[i]);
  }
}

// One CTA per weight row (grid-stride over rows), threads over the row's elements.
__global__ void dequantize_f16_kernel(__half* out, const uint8_t* w, WeightType type,
                                      size_t row_bytes, int64_t first_row, int rows, int64_t K) {
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const uint8_t* row = w + (first_row + r) * static_cast<int64_t>(row_bytes);
    __half* o = out + static_cast<int64_t>(r) * K;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
      o[k] = __float2half_rn(detail::weight_at(row, type, k));
  }
}

__global__ void add_bias_kernel(float* y, const float* bias, int M, int N) {
  const long total = static_cast<long>(M) * N;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    y[i] += bias[i % N];
}

}  // namespace

cudaError_t launch_cast_activations(void* out, bool bf16, const float* x, long n,
                                    cudaStream_t stream) {
  if (n <= 0) return n == 0 ? cudaSuccess : cudaErrorInvalidValue;
  const unsigned grid = grid_for((n + kThreads - 1) / kThreads);
  if (bf16)
    cast_kernel<true><<<grid, kThreads, 0, stream>>>(out, x, n);
  else
    cast_kernel<false><<<grid, kThreads, 0, stream>>>(out, x, n);
  return cudaGetLastError();
}

cudaError_t launch_dequantize_f16(__half* out, const void* w, WeightType type, size_t row_bytes,
                                  int64_t first_row, int rows, int64_t K, cudaStream_t stream) {
  if (rows < 0 || K < 0 || first_row < 0 || K % detail::block_elems(type) != 0)
    return cudaErrorInvalidValue;
  if (rows == 0 || K == 0) return cudaSuccess;
  dequantize_f16_kernel<<<grid_for(rows), kThreads, 0, stream>>>(
      out, static_cast<const uint8_t*>(w), type, row_bytes, first_row, rows, K);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* y, const float* bias, int M, int N, cudaStream_t stream) {
  if (M < 0 || N < 0) return cudaErrorInvalidValue;
  if (M == 0 || N == 0) return cudaSuccess;
  const long total = static_cast<long>(M) * N;
  add_bias_kernel<<<grid_for((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(y, bias, M,
                                                                                        N);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
