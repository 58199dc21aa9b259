// Rotary embedding, KV-cache append, the two fused, and argmax (see model_ops.h). Straight
// grid-stride kernels: correctness and parity with ops::ref first, tuning later.
#include <cuda_fp16.h>

#include "kv_type.cuh"
#include "tessera/kernels/model_ops.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 256;
// gridDim.y/z are capped at 65535; x is not, but keep row grids modest and stride the rest.
constexpr int kMaxRowBlocks = 65535;

// The rotary inverse frequencies by value in the launch's parameter space (kMaxRotaryPairs floats:
// 1 KiB of the 4 KiB a launch may carry): no upload per call and nothing a CUDA graph would have
// to copy from host memory when it replays.
struct RopeFreqs {
  float inv[kMaxRotaryPairs];
};

bool load_freqs(RopeFreqs& f, const float* host, int pairs) {
  if (pairs < 0 || pairs > kMaxRotaryPairs) return false;
  for (int i = 0; i < pairs; ++i) f.inv[i] = host[i];
  return true;
}

// One block per token; threads stride the (head, pair) grid of that token.
__global__ void rope_kernel(float* x, const int32_t* positions, const RopeFreqs inv,
                            int num_tokens, int num_heads, int head_dim, int rotary_dim,
                            bool neox) {
  const int half = rotary_dim / 2;
  for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    const float pos = static_cast<float>(positions[t]);
    float* row = x + static_cast<int64_t>(t) * num_heads * head_dim;
    for (int k = threadIdx.x; k < num_heads * half; k += blockDim.x) {
      const int h = k / half, i = k % half;
      float* v = row + static_cast<int64_t>(h) * head_dim;
      // Same fp32 angle as the reference (position * inv_freq, rounded to float) and the precise
      // sincosf, not the fast intrinsic, so long positions stay within fp32 rounding of ref.
      const float angle = pos * inv.inv[i];
      float s, c;
      sincosf(angle, &s, &c);
      const int a = neox ? i : 2 * i;
      const int b = neox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

__global__ void kv_append_kernel(void* k_cache, void* v_cache, KvType kv_type, const float* k,
                                 const float* v, const int32_t* slots, int num_tokens,
                                 int64_t width) {
  for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    if (slots[t] < 0) continue;  // a padding row: nothing written (uniform per block)
    const int64_t dst = static_cast<int64_t>(slots[t]) * width;
    const int64_t src = static_cast<int64_t>(t) * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
      store_kv(k_cache, dst + i, k[src + i], kv_type);
      store_kv(v_cache, dst + i, v[src + i], kv_type);
    }
  }
}

// (value, index) pair; index < 0 marks "no element seen". Larger value wins; on a tie the lower
// index wins, which is the reference's "first maximum" rule.
struct Best {
  float v;
  int64_t i;
};

__device__ Best better(Best a, Best b) {
  if (b.i < 0) return a;
  if (a.i < 0) return b;
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

__device__ Best warp_best(Best x) {
  for (int o = 16; o > 0; o >>= 1) {
    Best y{__shfl_xor_sync(0xffffffffu, x.v, o),
           static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(x.i), o))};
    x = better(x, y);
  }
  return x;
}

// One block per row: per-thread scan in ascending index order, then warp and block reductions.
__global__ void argmax_kernel(int32_t* out, const float* logits, int rows, int64_t cols) {
  __shared__ Best partial[kThreads / 32];
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = logits + static_cast<int64_t>(r) * cols;
    Best b{0.0f, -1};
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) b = better(b, Best{row[c], c});
    b = warp_best(b);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = b;
    __syncthreads();
    if (threadIdx.x < 32) {
      Best w = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : Best{0.0f, -1};
      w = warp_best(w);
      if (threadIdx.x == 0) out[r] = static_cast<int32_t>(w.i < 0 ? 0 : w.i);
    }
    __syncthreads();  // partial[] is reused by the next row
  }
}

// One block per token: the rotary pairs first (rotated once, written to k and to the cache slot),
// then the dims past rotary_dim and v, copied. The two loops touch disjoint elements of k.
__global__ void rope_kv_append_kernel(float* k, const float* v, void* k_cache, void* v_cache,
                                      KvType kv_type, const int32_t* positions,
                                      const int32_t* slots, const RopeFreqs inv, int num_tokens,
                                      int num_kv_heads, int head_dim, int rotary_dim, bool neox) {
  const int half = rotary_dim / 2;
  const int64_t width = static_cast<int64_t>(num_kv_heads) * head_dim;
  for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    const float pos = static_cast<float>(positions[t]);
    float* row = k + static_cast<int64_t>(t) * width;
    const bool store = slots[t] >= 0;  // -1: a padding row, k rotated but nothing cached
    const int64_t kdst = store ? static_cast<int64_t>(slots[t]) * width : 0;
    for (int p = threadIdx.x; p < num_kv_heads * half; p += blockDim.x) {
      const int h = p / half, i = p % half;
      const int64_t base = static_cast<int64_t>(h) * head_dim;
      const float angle = pos * inv.inv[i];  // as rope_kernel: the reference's fp32 angle
      float s, c;
      sincosf(angle, &s, &c);
      const int64_t a = base + (neox ? i : 2 * i);
      const int64_t b = base + (neox ? i + half : 2 * i + 1);
      const float x0 = row[a], x1 = row[b];
      const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
      row[a] = y0;
      row[b] = y1;
      if (store) {
        store_kv(k_cache, kdst + a, y0, kv_type);
        store_kv(k_cache, kdst + b, y1, kv_type);
      }
    }
    for (int64_t e = threadIdx.x; store && e < width; e += blockDim.x) {
      // Dims rotary_dim.. of each head pass through unrotated.
      if (static_cast<int>(e % head_dim) >= rotary_dim)
        store_kv(k_cache, kdst + e, row[e], kv_type);
      store_kv(v_cache, kdst + e, v[static_cast<int64_t>(t) * width + e], kv_type);
    }
  }
}

int row_blocks(int rows) { return rows < kMaxRowBlocks ? rows : kMaxRowBlocks; }

}  // namespace

cudaError_t launch_rope(float* x, const int32_t* positions, const float* inv_freq, int num_tokens,
                        int num_heads, int head_dim, int rotary_dim, bool neox,
                        cudaStream_t stream) {
  if (num_tokens == 0 || num_heads == 0 || rotary_dim < 2) return cudaSuccess;
  RopeFreqs inv;
  if (!load_freqs(inv, inv_freq, rotary_dim / 2)) return cudaErrorInvalidValue;
  rope_kernel<<<row_blocks(num_tokens), kThreads, 0, stream>>>(
      x, positions, inv, num_tokens, num_heads, head_dim, rotary_dim, neox);
  return cudaGetLastError();
}

cudaError_t launch_rope_kv_append(float* k, const float* v, void* k_cache, void* v_cache,
                                  KvType kv_type, const int32_t* positions, const int32_t* slots,
                                  const float* inv_freq, int num_tokens, int num_kv_heads,
                                  int head_dim, int rotary_dim, bool neox, cudaStream_t stream) {
  if (num_tokens == 0 || num_kv_heads == 0 || head_dim == 0) return cudaSuccess;
  if (rotary_dim < 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) return cudaErrorInvalidValue;
  RopeFreqs inv;
  if (!load_freqs(inv, inv_freq, rotary_dim / 2)) return cudaErrorInvalidValue;
  rope_kv_append_kernel<<<row_blocks(num_tokens), kThreads, 0, stream>>>(
      k, v, k_cache, v_cache, kv_type, positions, slots, inv, num_tokens, num_kv_heads,
      head_dim, rotary_dim, neox);
  return cudaGetLastError();
}

cudaError_t launch_kv_append(void* k_cache, void* v_cache, KvType kv_type, const float* k,
                             const float* v, const int32_t* slots, int num_tokens, int64_t width,
                             cudaStream_t stream) {
  if (num_tokens == 0 || width == 0) return cudaSuccess;
  kv_append_kernel<<<row_blocks(num_tokens), kThreads, 0, stream>>>(k_cache, v_cache, kv_type, k, v,
                                                                    slots, num_tokens, width);
  return cudaGetLastError();
}

cudaError_t launch_argmax(int32_t* out, const float* logits, int rows, int64_t cols,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  argmax_kernel<<<row_blocks(rows), kThreads, 0, stream>>>(out, logits, rows, cols);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
