// Host planning and the softmax-merge math of the CUDA flash attention
// (kernels/flash_attention.cu). The plan (how many query heads and rows one CTA takes, how the
// context is split) is plain host code; the merge functions are __host__ __device__ so the split-K
// reduce kernel and the CPU tests (tests/ops/cuda_attention_plan_test.cpp) run the very same
// arithmetic. Plain C++ outside nvcc, so the tests build and run without the CUDA toolkit. Pure
// functions; no state.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define TESSERA_ATTN_HD __host__ __device__
#else
#define TESSERA_ATTN_HD
#endif

namespace tessera::kernels::attn {

inline constexpr int kKeyTile = 32;      // keys per shared-memory tile: one per lane when scoring
inline constexpr int kMaxVecs = 8;       // (query row, head) pairs one CTA keeps: 2 per warp
inline constexpr int kMaxHeadDim = 128;  // 4 output dims per lane in registers; larger: old kernel
inline constexpr int kMinChunk = 256;    // fewest keys per split: below it the reduce costs more
inline constexpr int kMaxSplits = 64;    // bounds the partials' workspace

// How the context is cut: split z takes keys [z * chunk, (z + 1) * chunk).
struct SplitPlan {
  int num_splits = 1;
  int chunk = 0;  // a multiple of kKeyTile
};

// Splits so that base_ctas * splits roughly fills two waves of sm_count SMs, but never below
// kMinChunk keys per split (short contexts stay one pass, no reduce) nor above kMaxSplits.
inline SplitPlan plan_splits(int64_t max_context, int64_t base_ctas, int sm_count) {
  const int64_t ctx = std::max<int64_t>(max_context, 1);
  const auto round_up = [](int64_t x, int64_t m) { return (x + m - 1) / m * m; };
  int64_t want = (2 * int64_t{std::max(sm_count, 1)} + std::max<int64_t>(base_ctas, 1) - 1) /
                 std::max<int64_t>(base_ctas, 1);
  want = std::min({want, ctx / kMinChunk, int64_t{kMaxSplits}});
  want = std::max<int64_t>(want, 1);
  const int64_t chunk = round_up((ctx + want - 1) / want, kKeyTile);
  return SplitPlan{static_cast<int>((ctx + chunk - 1) / chunk), static_cast<int>(chunk)};
}

// The launch geometry. A CTA serves one sequence, one KV head and heads_per_cta of its query
// heads (all of a GQA group up to kMaxVecs) for up to rows_per_cta query rows, so each K/V tile it
// loads is used by rows_per_cta * heads_per_cta query vectors. The host does not know each
// sequence's q_len (the batch lives on the device), so grid.x is a bound on the number of row
// tiles, sum over s of ceil(q_len_s / rows_per_cta) <= ceil(num_tokens / rows_per_cta) + num_seqs;
// a small kernel writes each sequence's first tile (tile_starts) and CTAs past the last exit.
// grid = (row_tiles, num_kv_heads * head_chunks, splits).
struct AttentionPlan {
  int heads_per_cta = 1;
  int head_chunks = 1;
  int rows_per_cta = 1;
  int row_tiles = 1;
  SplitPlan split;
  bool ok = false;  // false: a shape this kernel does not take (the simple kernel runs)
};

// max_context: an upper bound on every context_lens[s] (max_blocks_per_seq * block_size).
inline AttentionPlan plan_attention(int num_tokens, int num_seqs, int num_heads, int num_kv_heads,
                                    int head_dim, int64_t max_context, int sm_count) {
  AttentionPlan p;
  if (num_tokens <= 0 || num_seqs <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      head_dim <= 0 || head_dim > kMaxHeadDim)
    return p;
  const int group = num_heads / num_kv_heads;
  p.heads_per_cta = std::min(group, kMaxVecs);
  p.head_chunks = (group + p.heads_per_cta - 1) / p.heads_per_cta;
  p.rows_per_cta = std::max(1, kMaxVecs / p.heads_per_cta);
  const int64_t tiles = (int64_t{num_tokens} + p.rows_per_cta - 1) / p.rows_per_cta + num_seqs;
  const int64_t grid_y = int64_t{num_kv_heads} * p.head_chunks;
  if (tiles > INT32_MAX || grid_y > 65535) return p;
  p.row_tiles = static_cast<int>(tiles);
  p.split = plan_splits(max_context, tiles * grid_y, sm_count);
  p.ok = true;
  return p;
}

// Row tiles of a sequence with q_len rows.
TESSERA_ATTN_HD inline int row_tiles_of(int q_len, int rows_per_cta) {
  return (q_len + rows_per_cta - 1) / rows_per_cta;
}

// The sequence a CTA of row tile x serves: the largest s < num_seqs with tile_starts[s] <= x
// (a sequence without rows has no tiles and shares its start with the next one); -1 when x is at
// or past tile_starts[num_seqs], the total.
TESSERA_ATTN_HD inline int tile_owner(const int32_t* tile_starts, int num_seqs, int x) {
  if (num_seqs <= 0 || x >= tile_starts[num_seqs]) return -1;
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile_starts[mid] <= x) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Workspace of one launch: tile_starts (num_seqs + 1 I32, padded to 16 bytes), then with several
// splits the partials: (m, l) and acc[head_dim] F32 per split, token and head.
inline size_t tile_starts_bytes(int num_seqs) {
  return (size_t(num_seqs + 1) * sizeof(int32_t) + 15) / 16 * 16;
}
inline size_t workspace_bytes(const AttentionPlan& p, int num_tokens, int num_seqs, int num_heads,
                              int head_dim) {
  size_t bytes = tile_starts_bytes(num_seqs);
  if (p.split.num_splits > 1)
    bytes += size_t(p.split.num_splits) * size_t(num_tokens) * size_t(num_heads) *
             (2 + size_t(head_dim)) * sizeof(float);
  return bytes;
}

// --- online softmax and the merge of partial states ---
// A partial state over a set of keys: m = max score, l = sum exp(score - m), acc = sum exp(score -
// m) * v. The empty set is (m = -inf, l = 0, acc = 0).

// Factor that moves a quantity kept relative to m_old to m_new >= m_old: 0 for an empty state
// (exp(-inf - -inf) would be NaN).
TESSERA_ATTN_HD inline float rescale(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
}

// The merged maximum of n partial states (m at m[z * stride]).
TESSERA_ATTN_HD inline float merged_max(const float* m, int n, int64_t stride) {
  float mx = -INFINITY;
  for (int z = 0; z < n; ++z) mx = fmaxf(mx, m[z * stride]);
  return mx;
}

// sum over z of x[z * stride] * rescale(m[z * stride], mx): the merged l (x = l) or one dimension
// of the merged acc (x = acc[d]). Empty states are skipped, never multiplied (their x is unread).
TESSERA_ATTN_HD inline float merged_sum(const float* m, const float* x, int n, int64_t m_stride,
                                        int64_t x_stride, float mx) {
  float sum = 0.0f;
  for (int z = 0; z < n; ++z) {
    const float mz = m[z * m_stride];
    if (mz != -INFINITY) sum += x[z * x_stride] * expf(mz - mx);
  }
  return sum;
}

}  // namespace tessera::kernels::attn
