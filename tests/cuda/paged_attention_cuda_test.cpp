// CUDA paged attention through ops::paged_attention against ops::ref::paged_attention on fresh
// random queries and caches, with shuffled (non-contiguous) block tables padded with -1, ragged
// batches mixing whole prefills, prefill chunks after earlier context, decodes and sequences with
// no query rows this step; MHA and GQA; head dims that are and are not multiples of 32; contexts
// spanning many 64-key tiles. Skipped without a GPU.
// Tolerance: 1e-4 absolute + 1e-4 relative. Both sides are fp32 but sum in different orders (the
// reference adds keys one by one with a full softmax; the kernel uses warp-tree dot products and
// an online softmax per 64-key tile); outputs are convex mixes of N(0,1) values, |out| <~ 4.
#include <algorithm>
#include <numeric>

#include "cuda_test_util.h"

namespace tessera::ops::test {
namespace {

class CudaPagedAttentionTest : public SeededTest {
 protected:
  struct Seq {
    int ctx;
    int q_len;
  };

  void check(const AttentionParams& p, const std::vector<Seq>& seqs) {
    const int S = static_cast<int>(seqs.size());
    int max_blocks = 1, total_blocks = 0, tokens = 0;
    for (const Seq s : seqs) {
      max_blocks = std::max(max_blocks, (s.ctx + p.block_size - 1) / p.block_size);
      total_blocks += (s.ctx + p.block_size - 1) / p.block_size;
      tokens += s.q_len;
    }
    max_blocks += 1;                          // a spare table column that stays -1
    const int num_blocks = total_blocks + 7;  // blocks that no table uses
    std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng());
    std::vector<int32_t> tables(static_cast<size_t>(S * max_blocks), -1), ctx, qstart = {0};
    size_t next = 0;
    for (int s = 0; s < S; ++s) {
      const int nb = (seqs[s].ctx + p.block_size - 1) / p.block_size;
      for (int b = 0; b < nb; ++b) tables[static_cast<size_t>(s * max_blocks + b)] = ids[next++];
      ctx.push_back(seqs[s].ctx);
      qstart.push_back(qstart.back() + seqs[s].q_len);
    }
    const int width = p.num_heads * p.head_dim;
    Tensor q = random_f32({tokens, width});
    // Every slot random, including the unused ones: a kernel reading past a context would show.
    Tensor kc = random_f32({num_blocks, p.block_size, p.num_kv_heads, p.head_dim});
    Tensor vc = random_f32({num_blocks, p.block_size, p.num_kv_heads, p.head_dim});
    const AttentionBatch batch{qstart, ctx, tables, max_blocks};
    Tensor expect = Tensor::empty({tokens, width}, DType::kF32);
    ref::paged_attention(q, kc, vc, batch, p, expect);
    Tensor dout = to_device(Tensor::zeros({tokens, width}, DType::kF32));
    // Inputs stay alive (named) until to_host has synchronised.
    Tensor dq = to_device(q), dkc = to_device(kc), dvc = to_device(vc);
    ops::paged_attention(dq, dkc, dvc, batch, p, dout);
    Tensor got = to_host(dout);
    for (int64_t i = 0; i < expect.numel(); ++i) {
      const float e = expect.data_as<float>()[i];
      ASSERT_NEAR(got.data_as<float>()[i], e, 1e-4f + 1e-4f * std::abs(e))
          << "row " << i / width << " head " << (i % width) / p.head_dim << " dim "
          << i % p.head_dim;
    }
  }

  static AttentionParams params(int heads, int kv_heads, int head_dim, int block_size) {
    return {heads, kv_heads, head_dim, block_size, 1.0f / std::sqrt(static_cast<float>(head_dim))};
  }
};

TEST_F(CudaPagedAttentionTest, MixedPrefillAndDecodeBatch) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const std::vector<Seq> seqs = {{37, 37}, {50, 13}, {1, 1}, {70, 1}, {131, 1}, {16, 16}};
  check(params(9, 3, 64, 16), seqs);   // GQA 3:1
  check(params(8, 8, 128, 16), seqs);  // MHA
  check(params(4, 1, 80, 32), seqs);   // MQA, head_dim not a multiple of 32
}

TEST_F(CudaPagedAttentionTest, DecodeOnlyLongContexts) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  // Contexts across tile (64) and block boundaries: 63, 64, 65, 1000, 2049.
  const std::vector<Seq> seqs = {{63, 1}, {64, 1}, {65, 1}, {1000, 1}, {2049, 1}};
  check(params(32, 8, 128, 16), seqs);
  check(params(14, 2, 64, 8), seqs);
}

TEST_F(CudaPagedAttentionTest, SequencesWithoutQueryRowsAndSinglePrefill) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  // Sequences with q_len 0 (idle this step) sit between and around active ones.
  check(params(4, 2, 64, 16), {{20, 0}, {5, 5}, {33, 0}, {40, 2}, {9, 0}});
  check(params(2, 2, 256, 16), {{200, 200}});  // one whole prefill, head_dim 256
}

TEST_F(CudaPagedAttentionTest, RandomRaggedBatches) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  for (int round = 0; round < 4; ++round) {
    const int kv = 1 << randint(0, 2), group = randint(1, 4);
    const int hd = std::vector<int>{32, 64, 96, 128}[static_cast<size_t>(randint(0, 3))];
    const int bs = std::vector<int>{1, 8, 16, 32}[static_cast<size_t>(randint(0, 3))];
    std::vector<Seq> seqs(static_cast<size_t>(randint(1, 12)));
    for (Seq& s : seqs) {
      s.ctx = randint(1, 600);
      const int kind = randint(0, 2);  // decode, prefill chunk, whole prefill
      s.q_len = kind == 0 ? 1 : kind == 1 ? randint(1, s.ctx) : s.ctx;
    }
    SCOPED_TRACE("round " + std::to_string(round) + " heads=" + std::to_string(kv * group) +
                 " kv=" + std::to_string(kv) + " hd=" + std::to_string(hd) +
                 " bs=" + std::to_string(bs) + " seqs=" + std::to_string(seqs.size()));
    check(params(kv * group, kv, hd, bs), seqs);
  }
}

}  // namespace
}  // namespace tessera::ops::test
