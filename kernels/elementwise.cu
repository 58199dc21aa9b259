#include "tessera/kernels/elementwise.h"

namespace tessera::kernels {
namespace {

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One block per row; threads stride the columns, then a two-level (warp, block) reduction.
__global__ void rms_norm_kernel(float* out, const float* x, const float* w, int cols, float eps) {
  const float* xr = x + static_cast<long>(blockIdx.x) * cols;
  float* orow = out + static_cast<long>(blockIdx.x) * cols;
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
  __shared__ float partial[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / cols + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = xr[c] * inv * w[c];
}

__global__ void silu_mul_kernel(float* out, const float* gate, const float* up, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.f + __expf(-g)) * up[i];
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
