// Paged flash attention (decode and prefill, see model_ops.h): one CTA per (sequence, KV head,
// tile of query rows, split of the context). The CTA streams its keys through the block table in
// tiles of kKeyTile into shared memory, and every (query row, head) vector of the tile — a whole
// GQA group for decode, several rows for prefill — scores that one copy, so a group reads each
// K/V row once. Each warp keeps the online softmax state (max m, sum l, unnormalised acc) of its
// vectors in registers. With one split the CTA writes the output; with several it writes partial
// states and a reduce kernel merges them (attention_plan.h: the plan and the merge arithmetic).
// fp32 throughout (an F16/BF16 cache widens as its tile is loaded), the ops::ref causal rule and
// GQA head mapping.
#include "kv_type.cuh"
#include "tessera/kernels/attention_plan.h"
#include "tessera/kernels/model_ops.h"

namespace tessera::kernels {
namespace {

using attn::kKeyTile;
using attn::kMaxVecs;
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kVecsPerWarp = kMaxVecs / kWarps;
constexpr int kDimsPerLane = attn::kMaxHeadDim / 32;
static_assert(kKeyTile == 32, "one key per lane when scoring");

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

struct Geometry {
  int heads_per_cta, head_chunks, rows_per_cta, num_splits, chunk;
};

// Dynamic shared memory: K tile [kKeyTile][head_dim + 1] (padded: lane k reads row k, so a
// stride of head_dim would put every lane on one bank) | V tile [kKeyTile][head_dim] |
// q [kMaxVecs][head_dim].
// tile_starts[s] = sum over s' < s of row_tiles_of(q_len_s'), s <= num_seqs: one CTA, each
// thread a contiguous run of sequences, then thread 0 scans the runs' totals.
__global__ void __launch_bounds__(kThreads)
    tile_starts_kernel(const int32_t* query_start, int num_seqs, int rows_per_cta,
                       int32_t* tile_starts) {
  __shared__ int32_t totals[kThreads + 1];
  const int per = (num_seqs + kThreads - 1) / kThreads;
  const int s0 = min(num_seqs, static_cast<int>(threadIdx.x) * per);
  const int s1 = min(num_seqs, s0 + per);
  int32_t sum = 0;
  for (int s = s0; s < s1; ++s)
    sum += attn::row_tiles_of(query_start[s + 1] - query_start[s], rows_per_cta);
  totals[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t run = 0;
    for (int t = 0; t < kThreads; ++t) {
      const int32_t n = totals[t];
      totals[t] = run;
      run += n;
    }
    totals[kThreads] = run;
  }
  __syncthreads();
  int32_t run = totals[threadIdx.x];
  for (int s = s0; s < s1; ++s) {
    tile_starts[s] = run;
    run += attn::row_tiles_of(query_start[s + 1] - query_start[s], rows_per_cta);
  }
  if (threadIdx.x == 0) tile_starts[num_seqs] = totals[kThreads];
}

__global__ void __launch_bounds__(kThreads)
    flash_attention_kernel(PagedAttentionArgs a, Geometry g, const int32_t* tile_starts,
                           float* part_ml, float* part_acc) {
  extern __shared__ float smem[];
  const int hd = a.head_dim, pitch = hd + 1;
  float* ks = smem;
  float* vs = ks + kKeyTile * pitch;
  float* qs = vs + kKeyTile * hd;
  __shared__ int64_t slots[kKeyTile];

  const int x = static_cast<int>(blockIdx.x);
  const int s = attn::tile_owner(tile_starts, a.num_seqs, x);
  if (s < 0) return;  // past the last tile (the grid is a bound); uniform across the CTA
  const int tile = x - tile_starts[s];
  const int kvh = static_cast<int>(blockIdx.y) / g.head_chunks;
  const int hchunk = static_cast<int>(blockIdx.y) % g.head_chunks;
  const int split = static_cast<int>(blockIdx.z);
  const int q0 = a.query_start[s], q_len = a.query_start[s + 1] - q0;
  const int row0 = tile * g.rows_per_cta;  // < q_len: the sequence has tile + 1 tiles or more
  const int rows = min(g.rows_per_cta, q_len - row0);
  const int group = a.num_heads / a.num_kv_heads;
  const int h0 = kvh * group + hchunk * g.heads_per_cta;
  const int heads = min(g.heads_per_cta, group - hchunk * g.heads_per_cta);
  const int nvec = rows * heads;  // vector v: row row0 + v / heads, head h0 + v % heads
  const int64_t first_pos = int64_t{a.context_lens[s]} - q_len + row0;
  const int64_t k_begin = int64_t{split} * g.chunk;
  const int64_t k_end = min(k_begin + g.chunk, first_pos + rows);  // causal: last row's pos + 1
  const int64_t slot_width = int64_t{a.num_kv_heads} * hd;
  const int32_t* table = a.block_tables + int64_t{s} * a.max_blocks_per_seq;

  for (int idx = threadIdx.x; idx < nvec * hd; idx += kThreads) {
    const int v = idx / hd, i = idx % hd;
    const int64_t token = q0 + row0 + v / heads;
    qs[idx] = a.q[(token * a.num_heads + h0 + v % heads) * hd + i];
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float m[kVecsPerWarp], l[kVecsPerWarp], acc[kVecsPerWarp][kDimsPerLane];
#pragma unroll
  for (int j = 0; j < kVecsPerWarp; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) acc[j][d] = 0.0f;
  }

  for (int64_t t0 = k_begin; t0 < k_end; t0 += kKeyTile) {
    const int n = static_cast<int>(min(int64_t{kKeyTile}, k_end - t0));
    __syncthreads();  // the previous tile is consumed (and, first time, q is written)
    if (threadIdx.x < n) {
      const int64_t t = t0 + threadIdx.x;
      slots[threadIdx.x] = int64_t{table[t / a.block_size]} * a.block_size + t % a.block_size;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n * hd; idx += kThreads) {
      const int k = idx / hd, i = idx % hd;
      const int64_t at = slots[k] * slot_width + int64_t{kvh} * hd + i;
      ks[k * pitch + i] = load_kv(a.k_cache, at, a.kv_type);
      vs[k * hd + i] = load_kv(a.v_cache, at, a.kv_type);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kVecsPerWarp; ++j) {
      const int v = warp + j * kWarps;
      if (v >= nvec) break;  // warp-uniform
      const int64_t pos = first_pos + v / heads;
      const bool valid = lane < n && t0 + lane <= pos;
      float score = -INFINITY;
      if (valid) {
        const float* qv = qs + v * hd;
        const float* kv = ks + lane * pitch;
        float dot = 0.0f;
        for (int i = 0; i < hd; ++i) dot += qv[i] * kv[i];
        score = dot * a.scale;
      }
      const float tile_max = warp_max(score);
      if (tile_max == -INFINITY) continue;  // every key of the tile is after this row
      const float m_new = fmaxf(m[j], tile_max);
      const float corr = attn::rescale(m[j], m_new);
      const float p = valid ? expf(score - m_new) : 0.0f;
      l[j] = l[j] * corr + warp_sum(p);
      m[j] = m_new;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) acc[j][d] *= corr;
      for (int k = 0; k < n; ++k) {
        const float pk = __shfl_sync(0xffffffffu, p, k);
#pragma unroll
        for (int d = 0; d < kDimsPerLane; ++d) {
          const int i = lane + 32 * d;
          if (i < hd) acc[j][d] += pk * vs[k * hd + i];
        }
      }
    }
  }

#pragma unroll

  for (int j = 0; j < kVecsPerWarp; ++j) {
    const int v = warp + j * kWarps;
    if (v >= nvec) break;
    const int64_t token = q0 + row0 + v / heads;
    const int64_t th = token * a.num_heads + h0 + v % heads;
    if (g.num_splits == 1) {
// Split 0 holds key 0 <= pos, so l >= 1.
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) {
        const int i = lane + 32 * d;
        if (i < hd) a.out[th * hd + i] = acc[j][d] / l[j];
      }
    } else {
      const int64_t at = int64_t{split} * a.num_tokens * a.num_heads + th;
      if (lane == 0) {
        part_ml[2 * at] = m[j];
        part_ml[2 * at + 1] = l[j];
      }
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) {
        const int i = lane + 32 * d;
        if (i < hd) part_acc[at * hd + i] = acc[j][d];
      }
    }
  }
}

// One CTA per (token, head): merges the splits' partial states (attention_plan.h). A split with
// no key at or before a row's position (or past its sequence's context) left m = -inf and is
// skipped.
__global__ void __launch_bounds__(kThreads)
    merge_splits_kernel(PagedAttentionArgs a, int num_splits, const float* part_ml,
                        const float* part_acc) {
  const int64_t th = int64_t{blockIdx.x} * a.num_heads + blockIdx.y;
  const int64_t split_stride = int64_t{a.num_tokens} * a.num_heads;
  const float* m = part_ml + 2 * th;
  const float mx = attn::merged_max(m, num_splits, 2 * split_stride);
  const float l = attn::merged_sum(m, m + 1, num_splits, 2 * split_stride, 2 * split_stride, mx);
  for (int i = threadIdx.x; i < a.head_dim; i += kThreads) {
    const float o = attn::merged_sum(m, part_acc + th * a.head_dim + i, num_splits,
                                     2 * split_stride, split_stride * a.head_dim, mx);
    a.out[th * a.head_dim + i] = o / l;
  }
}

}  // namespace

cudaError_t launch_flash_attention(const PagedAttentionArgs& a, const attn::AttentionPlan& plan,
                                   void* workspace, cudaStream_t stream) {
  if (a.num_tokens == 0 || a.num_heads == 0) return cudaSuccess;
  if (!plan.ok || a.num_seqs <= 0 || a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0 ||
      a.head_dim <= 0 || a.head_dim > attn::kMaxHeadDim || a.block_size <= 0 ||
      a.num_heads > 65535 || plan.split.num_splits < 1 || plan.split.num_splits > 65535 ||
      workspace == nullptr)
    return cudaErrorInvalidValue;
  const Geometry g{plan.heads_per_cta, plan.head_chunks, plan.rows_per_cta, plan.split.num_splits,
                   plan.split.chunk};
  const dim3 grid(static_cast<unsigned>(plan.row_tiles),
                  static_cast<unsigned>(a.num_kv_heads * plan.head_chunks),
                  static_cast<unsigned>(plan.split.num_splits));
  const size_t shared =
      (size_t{kKeyTile} * (2 * a.head_dim + 1) + size_t{kMaxVecs} * a.head_dim) * sizeof(float);
  auto* tile_starts = static_cast<int32_t*>(workspace);
  float* part_ml = reinterpret_cast<float*>(static_cast<uint8_t*>(workspace) +
                                            attn::tile_starts_bytes(a.num_seqs));
  float* part_acc = part_ml + 2 * int64_t{plan.split.num_splits} * a.num_tokens * a.num_heads;
  tile_starts_kernel<<<1, kThreads, 0, stream>>>(a.query_start, a.num_seqs, plan.rows_per_cta,
                                                 tile_starts);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  flash_attention_kernel<<<grid, kThreads, shared, stream>>>(a, g, tile_starts, part_ml, part_acc);
  if (plan.split.num_splits == 1) return cudaGetLastError();
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const dim3 merge_grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.num_heads));
  merge_splits_kernel<<<merge_grid, kThreads, 0, stream>>>(a, plan.split.num_splits, part_ml,
                                                           part_acc);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
