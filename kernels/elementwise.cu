#include "prologue.cuh"
#include "tessera/kernels/elementwise.h"

namespace tessera::kernels {
namespace {

// One block per row; threads stride the columns, then a two-level (warp, block) reduction
// (prologue.cuh, shared with the fused quantizer of gemv.cu).
__global__ void rms_norm_kernel(float* out, const float* x, const float* w, int cols, float eps) {
  const float* xr = x + static_cast<long>(blockIdx.x) * cols;
  float* orow = out + static_cast<long>(blockIdx.x) * cols;
  const float inv = detail::row_inv_rms(xr, cols, eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = xr[c] * inv * w[c];
}

__global__ void silu_mul_kernel(float* out, const float* gate, const float* up, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    out[i] = detail::silu_times(gate[i], up[i]);
  }
}

}  // namespace

cudaError_t launch_rms_norm(float* out, const float* x, const float* weight, int rows, int cols,
                            float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  rms_norm_kernel<<<rows, 256, 0, stream>>>(out, x, weight, cols, eps);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul(float* out, const float* gate, const float* up, long n,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const long blocks = (n + threads - 1) / threads;
  silu_mul_kernel<<<static_cast<int>(blocks < 65535 ? blocks : 65535), threads, 0, stream>>>(
      out, gate, up, n);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
