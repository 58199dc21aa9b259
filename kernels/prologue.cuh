// Private to kernels/: the arithmetic the decode GEMV's fused input prologues (gemv.cu: RMSNorm,
// SiLU x up, computed as the activations are quantized) share with the standalone rms_norm and
// silu_mul kernels (elementwise.cu), so fused and separate launches give the same bits.
#pragma once

namespace tessera::kernels::detail {

__device__ inline float row_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// 1 / sqrt(mean(x^2) + eps) of a row, to every thread of the block calling it (any block size up
// to 1024; every thread must call it, with the same row).
__device__ inline float row_inv_rms(const float* xr, int cols, float eps) {
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
  __shared__ float partial[32];
  ss = row_warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.f;
    v = row_warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / cols + eps);
  __syncthreads();  // partial[] may be reused by the caller's next row
  return inv;
}

// silu(g) * u.
__device__ inline float silu_times(float g, float u) { return g / (1.f + __expf(-g)) * u; }

}  // namespace tessera::kernels::detail
