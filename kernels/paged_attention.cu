// Paged attention (see model_ops.h): one thread block per (query token, head). The block finds
// its sequence by binary search over query_start, then streams that sequence's keys 0..pos through
// the block table in tiles, keeping an online softmax (running max m, running sum l, and the
// unnormalised output acc). Written for correctness and exact ops::ref semantics (fp32, same
// causal rule, same GQA head mapping); a tuned split-K / tensor-core kernel can replace it later.
#include "kv_type.cuh"
#include "tessera/kernels/model_ops.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 64;  // keys scored per tile

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Largest s in [0, num_seqs) with query_start[s] <= token: the owner of query row `token` (empty
// sequences share their start with the next one, and the last of equal starts owns the rows).
__device__ int find_sequence(const int32_t* query_start, int num_seqs, int token) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= token) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Dynamic shared memory: q[head_dim] | acc[head_dim]; static: scores and probabilities of a tile.
__global__ void paged_attention_kernel(PagedAttentionArgs a) {
  extern __shared__ float smem[];
  float* q = smem;
  float* acc = smem + a.head_dim;
  __shared__ float scores[kTile];
  __shared__ float probs[kTile];

  const int token = blockIdx.x, h = blockIdx.y;
  const int s = find_sequence(a.query_start, a.num_seqs, token);
  const int q_len = a.query_start[s + 1] - a.query_start[s];
  const int j = token - a.query_start[s];
  const int64_t pos = static_cast<int64_t>(a.context_lens[s]) - q_len + j;  // attends to 0..pos
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const int hd = a.head_dim;
  const int64_t slot_width = static_cast<int64_t>(a.num_kv_heads) * hd;
  const int32_t* table = a.block_tables + static_cast<int64_t>(s) * a.max_blocks_per_seq;
  const int64_t row = (static_cast<int64_t>(token) * a.num_heads + h) * hd;

  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    q[i] = a.q[row + i];
    acc[i] = 0.0f;  // each thread owns acc[i] for its i: no sync needed on acc itself
  }
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float m = -INFINITY, l = 0.0f;  // identical in every thread (computed from shared values)
  for (int64_t t0 = 0; t0 <= pos; t0 += kTile) {
    const int n = static_cast<int>(pos + 1 - t0 < kTile ? pos + 1 - t0 : kTile);
    // Scores: one warp per key, lanes stride head_dim.
    for (int k = warp; k < n; k += kWarps) {
      const int64_t t = t0 + k;
      const int64_t slot =
          static_cast<int64_t>(table[t / a.block_size]) * a.block_size + t % a.block_size;
      const int64_t kv = slot * slot_width + static_cast<int64_t>(kvh) * hd;
      float dot = 0.0f;
      for (int i = lane; i < hd; i += 32) dot += q[i] * load_kv(a.k_cache, kv + i, a.kv_type);
      dot = warp_sum(dot);
      if (lane == 0) scores[k] = dot * a.scale;
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int k = 0; k < n; ++k) tile_max = fmaxf(tile_max, scores[k]);
    const float m_new = fmaxf(m, tile_max);
    const float correction = expf(m - m_new);  // 0 on the first tile (m == -inf)
    for (int k = threadIdx.x; k < n; k += blockDim.x) probs[k] = expf(scores[k] - m_new);
    __syncthreads();
    float tile_sum = 0.0f;
    for (int k = 0; k < n; ++k) tile_sum += probs[k];
    l = l * correction + tile_sum;
    m = m_new;
    // Values: each thread updates the output dims it owns.
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
      float v_acc = acc[i] * correction;
      for (int k = 0; k < n; ++k) {
        const int64_t t = t0 + k;
        const int64_t slot =
            static_cast<int64_t>(table[t / a.block_size]) * a.block_size + t % a.block_size;
        v_acc +=
            probs[k] *
            load_kv(a.v_cache, slot * slot_width + static_cast<int64_t>(kvh) * hd + i, a.kv_type);
      }
      acc[i] = v_acc;
    }
    __syncthreads();  // scores/probs are overwritten by the next tile
  }
  // pos >= 0 always (q_len <= context), so l >= 1 here.
  for (int i = threadIdx.x; i < hd; i += blockDim.x) a.out[row + i] = acc[i] / l;
}

}  // namespace

cudaError_t launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0 || a.num_heads == 0) return cudaSuccess;
  if (a.num_seqs <= 0 || a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0 ||
      a.head_dim <= 0 || a.block_size <= 0 || a.num_heads > 65535)
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.num_heads));
  const size_t shared = 2 * static_cast<size_t>(a.head_dim) * sizeof(float);
  paged_attention_kernel<<<grid, kThreads, shared, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
