// Paged attention against a dense naive attention (double precision) on contiguous per-sequence
// K/V, with the caches filled through kv_append and random, non-contiguous block tables. One batch
// mixes a whole prefill, a prefill chunk after prior context and decodes of different lengths;
// GQA with 9 query heads over 3 kv heads, head_dim 64.
#include <omp.h>

#include <algorithm>
#include <numeric>

#include "tessera/core/half.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class AttentionTest : public SeededTest {};

struct Seq {
  int ctx;
  int q_len;
};

TEST_F(AttentionTest, MixedBatchMatchesDenseAttention) {
  const int H = 9, KVH = 3, HD = 64, BS = 16;
  const std::vector<Seq> seqs = {{37, 37}, {50, 13}, {1, 1}, {70, 1}, {131, 1}, {16, 16}};
  const int S = static_cast<int>(seqs.size());
  int max_blocks = 0, total_blocks = 0, tokens = 0;
  for (auto s : seqs) {
    max_blocks = std::max(max_blocks, (s.ctx + BS - 1) / BS);
    total_blocks += (s.ctx + BS - 1) / BS;
    tokens += s.q_len;
  }
  const int num_blocks = total_blocks + 5;  // spare blocks that no table uses
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng());
  std::vector<int32_t> tables(static_cast<size_t>(S * max_blocks), -1);
  std::vector<int32_t> ctx_lens, qstart = {0};
  Tensor kc = Tensor::zeros({num_blocks, BS, KVH, HD}, DType::kF32);
  Tensor vc = Tensor::zeros({num_blocks, BS, KVH, HD}, DType::kF32);
  Tensor q = random_f32({tokens, H * HD});
  std::vector<Tensor> ks, vs;  // dense per-sequence K/V [ctx, KVH*HD]
  size_t next = 0;
  for (int s = 0; s < S; ++s) {
    const int nb = (seqs[s].ctx + BS - 1) / BS;
    for (int b = 0; b < nb; ++b) tables[static_cast<size_t>(s * max_blocks + b)] = ids[next++];
    ks.push_back(random_f32({seqs[s].ctx, KVH * HD}));
    vs.push_back(random_f32({seqs[s].ctx, KVH * HD}));
    std::vector<int32_t> slots;
    for (int t = 0; t < seqs[s].ctx; ++t)
      slots.push_back(tables[static_cast<size_t>(s * max_blocks + t / BS)] * BS + t % BS);
    ops::kv_append(ks.back(), vs.back(), slots, kc, vc);
    ctx_lens.push_back(seqs[s].ctx);
    qstart.push_back(qstart.back() + seqs[s].q_len);
  }
  AttentionParams p{H, KVH, HD, BS, 1.0f / 8.0f};
  AttentionBatch batch{qstart, ctx_lens, tables, max_blocks};
  Tensor out_ref = Tensor::empty({tokens, H * HD}, DType::kF32);
  Tensor out_cpu = Tensor::empty({tokens, H * HD}, DType::kF32);
  Tensor out_dispatch = Tensor::empty({tokens, H * HD}, DType::kF32);
  ref::paged_attention(q, kc, vc, batch, p, out_ref);
  cpu::paged_attention(q, kc, vc, batch, p, out_cpu);
  ops::paged_attention(q, kc, vc, batch, p, out_dispatch);

  std::vector<double> w, o(HD);
  for (int s = 0; s < S; ++s) {
    const float* K = ks[static_cast<size_t>(s)].data_as<float>();
    const float* V = vs[static_cast<size_t>(s)].data_as<float>();
    for (int j = 0; j < seqs[s].q_len; ++j) {
      const int row = qstart[static_cast<size_t>(s)] + j;
      const int pos = seqs[s].ctx - seqs[s].q_len + j;
      for (int h = 0; h < H; ++h) {
        const int g = h / (H / KVH);
        const float* qv = q.data_as<float>() + (row * H + h) * HD;
        w.assign(static_cast<size_t>(pos + 1), 0.0);
        double mx = -1e300, sum = 0;
        for (int t = 0; t <= pos; ++t) {
          double d = 0;
          for (int i = 0; i < HD; ++i) d += double{qv[i]} * K[(t * KVH + g) * HD + i];
          w[static_cast<size_t>(t)] = d / 8.0;
          mx = std::max(mx, d / 8.0);
        }
        for (double& x : w) sum += (x = std::exp(x - mx));
        std::fill(o.begin(), o.end(), 0.0);
        for (int t = 0; t <= pos; ++t)
          for (int i = 0; i < HD; ++i)
            o[static_cast<size_t>(i)] +=
                w[static_cast<size_t>(t)] / sum * V[(t * KVH + g) * HD + i];
        for (int i = 0; i < HD; ++i) {
          // Outputs are convex combinations of N(0,1) values; fp32 scores carry ~1e-6 relative
          // error and the sums over <= 131 keys a few ulps more, so 2e-5 absolute is ample
          // while a wrong key, head or mask moves outputs by ~1e-2 or more.
          const size_t idx = static_cast<size_t>((row * H + h) * HD + i);
          ASSERT_NEAR(out_ref.data_as<float>()[idx], o[static_cast<size_t>(i)], 2e-5)
              << "ref seq " << s << " row " << j << " head " << h << " dim " << i;
          ASSERT_NEAR(out_cpu.data_as<float>()[idx], o[static_cast<size_t>(i)], 2e-5)
              << "cpu seq " << s << " row " << j << " head " << h << " dim " << i;
          ASSERT_NEAR(out_dispatch.data_as<float>()[idx], o[static_cast<size_t>(i)], 2e-5);
        }
      }
    }
  }
}

// An F16/BF16 cache stores each value rounded to nearest even and attention reads exactly those
// values: ref and cpu give bit for bit what they give on an F32 cache holding the rounded values,
// and kv_append on cpu (F16C) stores the reference's bits. Rounding moves an output by about
// 2^-11 (fp16) or 2^-8 (bf16) of the values' scale, well above fp32 noise, so a cache read as the
// wrong type could not pass.
TEST_F(AttentionTest, HalfCachesHoldRoundedValues) {
  const int H = 6, KVH = 2, HD = 40, BS = 8, ctx = 45;
  const int blocks = (ctx + BS - 1) / BS;
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng());
  std::vector<int32_t> slots;
  for (int t = 0; t < ctx; ++t) slots.push_back(table[static_cast<size_t>(t / BS)] * BS + t % BS);
  const Tensor k = random_f32({ctx, KVH * HD}), v = random_f32({ctx, KVH * HD});
  const Tensor q = random_f32({3, H * HD});  // the last 3 positions
  const AttentionParams p{
      .num_heads = H, .num_kv_heads = KVH, .head_dim = HD, .block_size = BS, .scale = 0.2f};
  const std::vector<int32_t> qstart{0, 3}, lens{ctx};
  const AttentionBatch batch{qstart, lens, table, blocks};
  for (DType kv : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(std::string(dtype_name(kv)));
    const auto round = [&](const Tensor& x) {
      Tensor r = clone(x);
      for (int64_t i = 0; i < r.numel(); ++i) {
        float& f = r.data_as<float>()[i];
        f = kv == DType::kF16 ? fp16_to_f32(f32_to_fp16(f)) : bf16_to_f32(f32_to_bf16(f));
      }
      return r;
    };
    Tensor hk = Tensor::zeros({blocks, BS, KVH, HD}, kv), hv = clone(hk);
    Tensor ck = clone(hk), cv = clone(hk);
    Tensor fk = Tensor::zeros({blocks, BS, KVH, HD}, DType::kF32), fv = clone(fk);
    ref::kv_append(k, v, slots, hk, hv);
    cpu::kv_append(k, v, slots, ck, cv);
    ASSERT_EQ(std::memcmp(hk.data(), ck.data(), hk.nbytes()), 0);
    ASSERT_EQ(std::memcmp(hv.data(), cv.data(), hv.nbytes()), 0);
    ref::kv_append(round(k), round(v), slots, fk, fv);
    Tensor exact = Tensor::empty({3, H * HD}, DType::kF32);
    ref::paged_attention(q, fk, fv, batch, p, exact);
    for (bool fast : {false, true}) {
      Tensor got = Tensor::empty({3, H * HD}, DType::kF32), want = clone(got);
      if (fast) {
        cpu::paged_attention(q, hk, hv, batch, p, got);
        cpu::paged_attention(q, fk, fv, batch, p, want);
      } else {
        ref::paged_attention(q, hk, hv, batch, p, got);
        want = exact;
      }
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.nbytes()), 0) << (fast ? "cpu" : "ref");
    }
    // Against the unrounded F32 cache the outputs move, by about the rounding unit.
    Tensor fk32 = Tensor::zeros({blocks, BS, KVH, HD}, DType::kF32), fv32 = clone(fk32);
    ref::kv_append(k, v, slots, fk32, fv32);
    Tensor full = Tensor::empty({3, H * HD}, DType::kF32);
    ref::paged_attention(q, fk32, fv32, batch, p, full);
    double worst = 0.0;
    for (int64_t i = 0; i < full.numel(); ++i)
      worst =
          std::max(worst, std::abs(double{full.data_as<float>()[i]} - exact.data_as<float>()[i]));
    const double unit = kv == DType::kF16 ? 0x1p-11 : 0x1p-8;
    EXPECT_GT(worst, unit / 64);
    EXPECT_LT(worst, unit * 8);
  }
}

// A decode step of one or two sequences has fewer (sequence, kv head) items than 8 threads, so
// cpu::paged_attention runs one item per query head instead; each head's arithmetic
// is its group's, so the outputs equal the single-thread call (grouped items, inline) bit for
// bit, and the reference to fp32 noise (convex combinations of N(0,1) values: 2e-5 absolute, as
// in MixedBatchMatchesDenseAttention; a part merged with the wrong weight moves outputs by ~1e-2).
TEST_F(AttentionTest, DecodeSplitByQueryHeadEqualsGroupedItems) {
  const int H = 9, KVH = 3, HD = 64, BS = 16;
  // Contexts above 256 are also cut into parts of 256 keys (flash-decoding), merged after: the
  // parts depend on the context only, so one and eight threads still agree bit for bit.
  for (const std::vector<int>& ctxs : {std::vector<int>{131}, std::vector<int>{70, 200},
                                       std::vector<int>{700}, std::vector<int>{300, 1000}}) {
    const int S = static_cast<int>(ctxs.size());
    const int max_blocks = (*std::max_element(ctxs.begin(), ctxs.end()) + BS - 1) / BS;
    const int num_blocks = S * max_blocks;
    Tensor kc = Tensor::zeros({num_blocks, BS, KVH, HD}, DType::kF32);
    Tensor vc = Tensor::zeros({num_blocks, BS, KVH, HD}, DType::kF32);
    std::vector<int32_t> tables(static_cast<size_t>(num_blocks)), qstart = {0}, ctx_lens;
    std::iota(tables.begin(), tables.end(), 0);
    std::shuffle(tables.begin(), tables.end(), rng());
    for (int s = 0; s < S; ++s) {
      std::vector<int32_t> slots;
      for (int t = 0; t < ctxs[s]; ++t)
        slots.push_back(tables[static_cast<size_t>(s * max_blocks + t / BS)] * BS + t % BS);
      ops::kv_append(random_f32({ctxs[s], KVH * HD}), random_f32({ctxs[s], KVH * HD}), slots, kc,
                     vc);
      ctx_lens.push_back(ctxs[s]);
      qstart.push_back(s + 1);
    }
    Tensor q = random_f32({S, H * HD});
    const AttentionParams p{H, KVH, HD, BS, 1.0f / 8.0f};
    const AttentionBatch batch{qstart, ctx_lens, tables, max_blocks};
    Tensor ref_out = Tensor::empty({S, H * HD}, DType::kF32);
    Tensor one = Tensor::empty({S, H * HD}, DType::kF32);
    Tensor two = Tensor::empty({S, H * HD}, DType::kF32);
    ref::paged_attention(q, kc, vc, batch, p, ref_out);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    cpu::paged_attention(q, kc, vc, batch, p, one);
    omp_set_num_threads(8);
    cpu::paged_attention(q, kc, vc, batch, p, two);
    omp_set_num_threads(threads);
    for (int64_t i = 0; i < one.numel(); ++i) {
      ASSERT_EQ(one.data_as<float>()[i], two.data_as<float>()[i]) << "S " << S << " at " << i;
      ASSERT_NEAR(two.data_as<float>()[i], ref_out.data_as<float>()[i], 2e-5) << "at " << i;
    }
  }
}

// cpu::paged_attention's loops take up to three heads of a GQA group at a time over each widened
// K/V row (groups of 2, 4, 5, 7, 8 run as 3+3+2, 3+1, ...; head sizes with a 32-lane remainder;
// key counts that are not a multiple of 4). Each head's products are summed in the order of the
// one-head loop, so the grouped call (one thread: one item per kv head) equals the call that
// splits a decode step into one item per query head (eight threads, more than the kv heads'
// items) bit for bit, on every cache type; and both are the reference to fp32 noise.
TEST_F(AttentionTest, GroupedHeadsEqualOneHeadAtATime) {
  const int BS = 16;
  const int threads = omp_get_max_threads();
  for (auto [H, KVH] : {std::pair{4, 2}, {8, 2}, {10, 2}, {7, 1}, {8, 1}, {3, 3}, {9, 3}})
    for (int HD : {40, 64, 80, 128})
      for (DType kv : {DType::kF32, DType::kF16, DType::kBF16})
        for (int ctx : {37, 300}) {
          SCOPED_TRACE(::testing::Message() << H << "/" << KVH << " heads, hd " << HD << ", "
                                            << dtype_name(kv) << ", ctx " << ctx);
          const int blocks = (ctx + BS - 1) / BS;
          std::vector<int32_t> table(static_cast<size_t>(blocks)), slots;
          std::iota(table.begin(), table.end(), 0);
          std::shuffle(table.begin(), table.end(), rng());
          for (int t = 0; t < ctx; ++t)
            slots.push_back(table[static_cast<size_t>(t / BS)] * BS + t % BS);
          Tensor kc = Tensor::zeros({blocks, BS, KVH, HD}, kv), vc = clone(kc);
          ops::kv_append(random_f32({ctx, KVH * HD}), random_f32({ctx, KVH * HD}), slots, kc, vc);
          const Tensor q = random_f32({1, H * HD});
          const AttentionParams p{.num_heads = H,
                                  .num_kv_heads = KVH,
                                  .head_dim = HD,
                                  .block_size = BS,
                                  .scale = 1.0f / std::sqrt(static_cast<float>(HD))};
          const std::vector<int32_t> qstart{0, 1}, lens{ctx};
          const AttentionBatch batch{qstart, lens, table, blocks};
          Tensor want = Tensor::empty({1, H * HD}, DType::kF32), one = clone(want),
                 two = clone(want);
          ref::paged_attention(q, kc, vc, batch, p, want);
          omp_set_num_threads(1);
          cpu::paged_attention(q, kc, vc, batch, p, one);
          omp_set_num_threads(8);
          cpu::paged_attention(q, kc, vc, batch, p, two);
          omp_set_num_threads(threads);
          ASSERT_EQ(std::memcmp(one.data(), two.data(), one.nbytes()), 0);
          for (int64_t i = 0; i < one.numel(); ++i)
            ASSERT_NEAR(one.data_as<float>()[i], want.data_as<float>()[i], 2e-5) << "at " << i;
        }
}

TEST_F(AttentionTest, SingleKeyReturnsItsValue) {
  // One token of context: softmax weight is exactly 1, so the output is that token's V row.
  const int H = 2, KVH = 1, HD = 16, BS = 4;
  Tensor kc = Tensor::zeros({2, BS, KVH, HD}, DType::kF32);
  Tensor vc = Tensor::zeros({2, BS, KVH, HD}, DType::kF32);
  Tensor k = random_f32({1, HD}), v = random_f32({1, HD});
  std::vector<int32_t> slot = {1 * BS + 0};
  ops::kv_append(k, v, slot, kc, vc);
  Tensor q = random_f32({1, H * HD});
  Tensor out = Tensor::empty({1, H * HD}, DType::kF32);
  std::vector<int32_t> qs = {0, 1}, ctx = {1}, table = {1};
  ops::paged_attention(q, kc, vc, AttentionBatch{qs, ctx, table, 1},
                       AttentionParams{H, KVH, HD, BS, 0.25f}, out);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < HD; ++i)
      EXPECT_NEAR(out.data_as<float>()[h * HD + i], v.data_as<float>()[i], 1e-6f);
}

TEST_F(AttentionTest, RejectsBadBlockIds) {
  const int H = 1, KVH = 1, HD = 8, BS = 4;
  Tensor kc = Tensor::zeros({2, BS, KVH, HD}, DType::kF32);
  Tensor vc = Tensor::zeros({2, BS, KVH, HD}, DType::kF32);
  Tensor q = random_f32({1, HD});
  Tensor out = Tensor::empty({1, HD}, DType::kF32);
  std::vector<int32_t> qs = {0, 1}, ctx = {5}, table = {0, 2};  // block 2 does not exist
  const AttentionBatch batch{qs, ctx, table, 2};
  const AttentionParams p{H, KVH, HD, BS, 1.0f};
  EXPECT_THROW(ops::paged_attention(q, kc, vc, batch, p, out), Error);
}

}  // namespace
}  // namespace tessera::ops::test
