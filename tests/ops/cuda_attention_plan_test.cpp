// The CUDA flash attention's host plan and merge arithmetic, run on the CPU: attention_plan.h is
// plain C++ outside nvcc and __host__ __device__ inside, so the split choices the backend makes and
// the very merge functions the reduce kernel runs are checked here without a GPU. The kernel's
// per-tile online softmax is replayed with the header's rescale() over the plan's splits, merged,
// and compared with a two-pass softmax in double on fresh random scores and values.
#include <cmath>
#include <limits>
#include <vector>

#include "../../kernels/include/tessera/kernels/attention_plan.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

namespace ka = kernels::attn;

class CudaAttentionPlan : public SeededTest {};

TEST_F(CudaAttentionPlan, SplitChoicesAtShortMediumAndLongContexts) {
  // One sequence, 8 KV heads, an H100's 132 SMs: 8 CTAs without splitting.
  const ka::SplitPlan p16 = ka::plan_splits(16, 8, 132);
  EXPECT_EQ(p16.num_splits, 1);  // below kMinChunk: one pass, no reduce
  const ka::SplitPlan p1k = ka::plan_splits(1024, 8, 132);
  EXPECT_EQ(p1k.num_splits, 4);  // capped by kMinChunk keys per split
  EXPECT_EQ(p1k.chunk, 256);
  const ka::SplitPlan p32k = ka::plan_splits(32768, 8, 132);
  EXPECT_EQ(p32k.num_splits, 32);  // ~2 waves: 8 * 33 CTAs wanted, chunk rounded to a tile
  EXPECT_EQ(p32k.chunk, 1024);
  // A batch of 64 sequences fills the GPU already: no split even at 32k.
  EXPECT_EQ(ka::plan_splits(32768, 64 * 8, 132).num_splits, 1);
  // Invariants over a sweep: the splits cover the context exactly once, tile-aligned, bounded.
  for (int64_t ctx : {1, 31, 32, 33, 255, 257, 1000, 4999, 5000, 65536, 1 << 20})
    for (int64_t base : {1, 3, 8, 64, 1000})
      for (int sms : {1, 16, 132}) {
        const ka::SplitPlan p = ka::plan_splits(ctx, base, sms);
        ASSERT_GE(p.num_splits, 1);
        ASSERT_LE(p.num_splits, ka::kMaxSplits);
        ASSERT_EQ(p.chunk % ka::kKeyTile, 0);
        ASSERT_GE(int64_t{p.num_splits} * p.chunk, ctx) << ctx << " " << base << " " << sms;
        ASSERT_LT(int64_t{p.num_splits - 1} * p.chunk, ctx) << "an empty split";
        if (p.num_splits > 1) {
          ASSERT_GE(p.chunk, ka::kMinChunk);
        }
      }
}

TEST_F(CudaAttentionPlan, GeometryGroupsHeadsAndTilesRows) {
  // Llama-3 8B decode, batch 4: 32 heads over 8 KV heads; a CTA takes the whole group of 4,
  // two rows of it (8 vectors); the grid bounds the row tiles by ceil(4 / 2) + 4.
  auto p = ka::plan_attention(4, 4, 32, 8, 128, 4096, 132);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.heads_per_cta, 4);
  EXPECT_EQ(p.head_chunks, 1);
  EXPECT_EQ(p.rows_per_cta, 2);
  EXPECT_EQ(p.row_tiles, 6);
  // GQA 8 (SmolLM2-like 9/3 is 3): 8 heads a CTA, one row.
  p = ka::plan_attention(1, 1, 64, 8, 128, 5008, 132);
  EXPECT_EQ(p.heads_per_cta, 8);
  EXPECT_EQ(p.rows_per_cta, 1);
  EXPECT_GT(p.split.num_splits, 1);  // 8 CTAs for 132 SMs: split the 5k context
  // MHA prefill of 100 rows: 8 rows a CTA, 13 row tiles (+1 of the bound).
  p = ka::plan_attention(100, 1, 12, 12, 64, 128, 132);
  EXPECT_EQ(p.heads_per_cta, 1);
  EXPECT_EQ(p.rows_per_cta, 8);
  EXPECT_EQ(p.row_tiles, 14);
  // Group of 16: two chunks of 8 heads.
  p = ka::plan_attention(2, 2, 32, 2, 64, 64, 132);
  EXPECT_EQ(p.head_chunks, 2);
  // Mixed batch: 3 sequences, 75 rows, group 3: 2 rows a CTA.
  p = ka::plan_attention(75, 3, 6, 2, 64, 160, 132);
  EXPECT_EQ(p.rows_per_cta, 2);
  EXPECT_EQ(p.row_tiles, 38 + 3);
  // Shapes the kernel does not take go to the simple kernel.
  EXPECT_FALSE(ka::plan_attention(1, 1, 8, 8, 256, 64, 132).ok);  // head_dim > 128
  EXPECT_FALSE(ka::plan_attention(1, 1, 9, 2, 64, 64, 132).ok);   // not a GQA multiple
}

// The grid bound holds for any split of the rows, empty sequences included, and tile_owner maps
// every row tile to the sequence and tile the kernel must serve, each exactly once.
TEST_F(CudaAttentionPlan, RowTilesCoverEveryRowOnce) {
  for (int trial = 0; trial < 200; ++trial) {
    const int S = randint(1, 12), R = randint(1, 8);
    std::vector<int32_t> qstart{0};
    for (int s = 0; s < S; ++s) qstart.push_back(qstart.back() + randint(0, 3) * randint(0, 9));
    const int T = qstart.back();
    if (T == 0) continue;
    std::vector<int32_t> starts{0};  // what tile_starts_kernel writes
    for (int s = 0; s < S; ++s)
      starts.push_back(starts.back() +
                       ka::row_tiles_of(qstart[size_t(s + 1)] - qstart[size_t(s)], R));
    const int64_t bound = (T + R - 1) / R + S;
    ASSERT_LE(starts.back(), bound);
    std::vector<int> seen(static_cast<size_t>(T), 0);
    for (int x = 0; x < bound; ++x) {
      const int s = ka::tile_owner(starts.data(), S, x);
      if (x >= starts.back()) {
        ASSERT_EQ(s, -1);
        continue;
      }
      ASSERT_GE(s, 0);
      const int q_len = qstart[size_t(s + 1)] - qstart[size_t(s)];
      const int row0 = (x - starts[size_t(s)]) * R;
      ASSERT_LT(row0, q_len) << "tile of an empty or finished sequence";
      for (int r = row0; r < std::min(q_len, row0 + R); ++r) ++seen[size_t(qstart[size_t(s)] + r)];
    }
    for (int t = 0; t < T; ++t) ASSERT_EQ(seen[size_t(t)], 1) << "row " << t;
  }
}

TEST_F(CudaAttentionPlan, WorkspaceBytes) {
  auto p = ka::plan_attention(1, 1, 64, 8, 128, 5008, 132);
  ASSERT_GT(p.split.num_splits, 1);
  EXPECT_EQ(ka::workspace_bytes(p, 1, 1, 64, 128),
            16 + size_t(p.split.num_splits) * 64 * (2 + 128) * sizeof(float));
  p = ka::plan_attention(1, 1, 64, 8, 128, 16, 132);
  EXPECT_EQ(ka::workspace_bytes(p, 1, 1, 64, 128), 16u);  // one split: only the tile starts
  EXPECT_EQ(ka::tile_starts_bytes(4), 32u);
}

// Replays one CTA's state machine for one query vector: keys [k0, k1) in tiles of kKeyTile, the
// tile's max merged into m with rescale(), exactly as flash_attention_kernel does.
struct Partial {
  float m = -INFINITY, l = 0.0f;
  std::vector<float> acc;
};
Partial run_split(const std::vector<float>& s, const std::vector<float>& v, int dim, int64_t k0,
                  int64_t k1) {
  Partial st;
  st.acc.assign(static_cast<size_t>(dim), 0.0f);
  for (int64_t t0 = k0; t0 < k1; t0 += ka::kKeyTile) {
    const int64_t n = std::min<int64_t>(ka::kKeyTile, k1 - t0);
    float tile_max = -INFINITY;
    for (int64_t k = 0; k < n; ++k) tile_max = std::fmax(tile_max, s[size_t(t0 + k)]);
    const float m_new = std::fmax(st.m, tile_max);
    const float corr = ka::rescale(st.m, m_new);
    float tile_sum = 0.0f;
    for (float& a : st.acc) a *= corr;
    for (int64_t k = 0; k < n; ++k) {
      const float p = std::exp(s[size_t(t0 + k)] - m_new);
      tile_sum += p;
      for (int d = 0; d < dim; ++d) st.acc[size_t(d)] += p * v[size_t((t0 + k) * dim + d)];
    }
    st.l = st.l * corr + tile_sum;
    st.m = m_new;
  }
  return st;
}

TEST_F(CudaAttentionPlan, MergedPartialsEqualOnePassSoftmax) {
  const int dim = 8;
  for (int64_t n : {1, 31, 33, 300, 1024, 5000}) {
    std::vector<float> scores(static_cast<size_t>(n)), values(static_cast<size_t>(n * dim));
    for (auto& x : scores) x = 3.0f * normal();  // a spread like q.k / sqrt(d) with outliers
    for (auto& x : values) x = normal();
    const ka::SplitPlan plan = ka::plan_splits(n, 1, 132);
    // One extra split past the context: the kernel leaves it empty (m = -inf) with unread acc,
    // here NaN so that multiplying it instead of skipping it would show.
    const int splits = plan.num_splits + 1;
    std::vector<float> ml(size_t(2 * splits)), acc(size_t(splits * dim));
    for (int z = 0; z < splits; ++z) {
      const int64_t k0 = int64_t{z} * plan.chunk, k1 = std::min<int64_t>(k0 + plan.chunk, n);
      Partial st = run_split(scores, values, dim, k0, k1);
      if (k0 >= n) st.acc.assign(size_t(dim), std::numeric_limits<float>::quiet_NaN());
      ml[size_t(2 * z)] = st.m;
      ml[size_t(2 * z + 1)] = st.l;
      for (int d = 0; d < dim; ++d) acc[size_t(z * dim + d)] = st.acc[size_t(d)];
    }
    ASSERT_EQ(ml[size_t(2 * (splits - 1))], -INFINITY);
    const float mx = ka::merged_max(ml.data(), splits, 2);
    const float l = ka::merged_sum(ml.data(), ml.data() + 1, splits, 2, 2, mx);
    // Two-pass softmax in double.
    double dmx = -1e300, dsum = 0;
    for (float x : scores) dmx = std::max(dmx, double{x});
    for (float x : scores) dsum += std::exp(double{x} - dmx);
    ASSERT_FLOAT_EQ(mx, static_cast<float>(dmx));
    EXPECT_NEAR(l, dsum, 1e-5 * dsum) << n;
    for (int d = 0; d < dim; ++d) {
      double want = 0;
      for (int64_t t = 0; t < n; ++t)
        want += std::exp(double{scores[size_t(t)]} - dmx) / dsum * values[size_t(t * dim + d)];
      const float got = ka::merged_sum(ml.data(), acc.data() + d, splits, 2, dim, mx) / l;
      // fp32 sums of <= 5000 positive weights and N(0,1) values in another order: relative
      // error of the weights ~1e-6, the output a convex combination bounded by max|v| ~ 4.
      ASSERT_NEAR(got, want, 1e-5 * 4) << "n " << n << " dim " << d;
    }
  }
}

}  // namespace
}  // namespace tessera::ops::test
