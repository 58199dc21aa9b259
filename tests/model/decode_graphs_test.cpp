// The host side of decode graphs (model/decode_graphs.h): buckets, which steps a graph replays,
// and the padded arrays it reads. The replays themselves: tests/worker/worker_test.cpp
// DecodeGraphsMatchOpByOp.
#include "tessera/model/decode_graphs.h"

#include <gtest/gtest.h>

#include "tessera/core/error.h"
#include "tessera/model/local_runner.h"
#include "tiny_llama.h"

namespace tessera::model {
namespace {

TEST(DecodeGraphs, BucketsDoubleThenStep) {
  EXPECT_EQ(default_decode_buckets(1), (std::vector<int>{1}));
  EXPECT_EQ(default_decode_buckets(0), (std::vector<int>{1}));
  EXPECT_EQ(default_decode_buckets(8), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(default_decode_buckets(64), (std::vector<int>{1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64}));
  EXPECT_EQ(default_decode_buckets(200).back(), 192);  // 96, 128, 160, 192
  const std::vector<int> b{1, 2, 4, 8};
  EXPECT_EQ(decode_bucket(b, 1), 1);
  EXPECT_EQ(decode_bucket(b, 3), 4);
  EXPECT_EQ(decode_bucket(b, 8), 8);
  EXPECT_EQ(decode_bucket(b, 9), 0);
}

struct Step {
  std::vector<int32_t> tokens{11, 12, 13}, positions{4, 0, 9}, slots{20, 33, 41};
  std::vector<int32_t> query_start{0, 1, 2, 3}, context{5, 1, 10};
  std::vector<int32_t> tables{5, 2, 0, 8, 0, 0, 10, 3, 1}, rows{0, 1, 2};
  ForwardBatch batch() const {
    return {.tokens = tokens,
            .positions = positions,
            .slots = slots,
            .query_start = query_start,
            .context_lens = context,
            .block_tables = tables,
            .max_blocks_per_seq = 3,
            .logit_rows = rows};
  }
};

TEST(DecodeGraphs, OnlyPlainDecodeStepsReplay) {
  Step s;
  EXPECT_TRUE(is_plain_decode(s.batch(), 3));
  EXPECT_FALSE(is_plain_decode(s.batch(), 2));  // a table wider than the graphs'
  Step prefill;                                 // sequence 0 with two query rows
  prefill.query_start = {0, 2, 3};
  prefill.context = {5, 10};
  prefill.tables = {5, 2, 0, 10, 3, 1};
  prefill.rows = {1, 2};
  EXPECT_FALSE(is_plain_decode(prefill.batch(), 3));
  Step unsampled;  // a row without logits
  unsampled.rows = {0, 2};
  EXPECT_FALSE(is_plain_decode(unsampled.batch(), 3));
  std::vector<int64_t> counters(4);
  ForwardBatch moe = s.batch();
  moe.expert_tokens = counters;
  EXPECT_FALSE(is_plain_decode(moe, 3));
  EXPECT_FALSE(is_plain_decode(ForwardBatch{}, 3));
}

TEST(DecodeGraphs, PaddingRowsCacheNothingAndReadBlockZero) {
  Step s;
  std::vector<int32_t> out;
  pad_decode_step(s.batch(), 4, 5, out);              // bucket 4, tables of 5 blocks
  const std::vector<int32_t> want{11, 12, 13, 0,      // tokens
                                  4,  0,  9,  0,      // positions
                                  20, 33, 41, -1,     // slots: the padding row caches nothing
                                  0,  1,  2,  3,  4,  // query_start
                                  5,  1,  10, 1,      // context: padding reads one token
                                  5,  2,  0,  0,  0, 8, 0, 0, 0, 0,  // tables at stride 5
                                  10, 3,  1,  0,  0, 0, 0, 0, 0, 0,  //
                                  0,  1,  2,  3};                    // logit rows
  EXPECT_EQ(out, want);
  EXPECT_THROW(pad_decode_step(s.batch(), 2, 5, out), Error);  // more rows than the bucket
  EXPECT_THROW(pad_decode_step(s.batch(), 4, 2, out), Error);  // a wider table
}

// A LocalRunner with graphs (model_bench's decode, `graph_max_batch`) gives the logits of one
// without: two sequences prefilled op by op, then three decode steps replayed at bucket 2.
TEST(DecodeGraphs, LocalRunnerReplaysDecodeSteps) {
  const auto weights = open_weights(testing::write_tiny_llama(17));
  const LlamaModel m(*weights);
  LocalRunner plain(m, {.num_blocks = 16, .block_size = 4});
  LocalRunner graphed(m, {.num_blocks = 16, .block_size = 4, .graph_max_batch = 2});
  ASSERT_NE(graphed.graphs(), nullptr);
  EXPECT_EQ(graphed.graphs()->buckets(), (std::vector<int>{1, 2}));
  std::vector<std::vector<int32_t>> feed{{3, 9, 27, 4, 1}, {8, 2}};
  const int a = plain.add_sequence(), b = plain.add_sequence();
  const int ga = graphed.add_sequence(), gb = graphed.add_sequence();
  for (int step = 0; step < 4; ++step) {
    const LocalRunner::Chunk p[] = {{.seq = a, .tokens = feed[0]}, {.seq = b, .tokens = feed[1]}};
    const LocalRunner::Chunk g[] = {{.seq = ga, .tokens = feed[0]}, {.seq = gb, .tokens = feed[1]}};
    const Tensor want = to_host(plain.step(p)), got = to_host(graphed.step(g));
    ASSERT_EQ(want.shape(), got.shape());
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(got.data_as<float>()[i], want.data_as<float>()[i], 1e-4f)
          << "step " << step << " [" << i << "]";
    feed = {{static_cast<int32_t>(10 + step)}, {static_cast<int32_t>(20 + step)}};
  }
  EXPECT_EQ(graphed.graphs()->replays(), 3);  // the prefill ran op by op
}

}  // namespace
}  // namespace tessera::model
