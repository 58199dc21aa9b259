// StepBatch, the one builder of a step's ForwardBatch: slots through the block table, query
// starts, context lengths, padded block tables and logit rows for a prefill chunk next to a
// decode; bad chunks are refused by name and leave the batch as it was.
#include "tessera/model/step_batch.h"

#include <gtest/gtest.h>

#include <vector>

#include "tessera/core/error.h"

namespace tessera::model {
namespace {

using V = std::vector<int32_t>;

TEST(StepBatch, PrefillNextToDecode) {
  StepBatch b(/*block_size=*/4, /*num_blocks=*/10);
  // Sequence 7: tokens 2..6 of a prompt (positions 2-6) through blocks {9, 3}.
  b.add(7, V{11, 12, 13, 14, 15}, 2, V{9, 3, 5}, StepBatch::Logits::kLast);
  // Sequence 8: one decode at position 4 (its second block, 1).
  b.add(8, V{21}, 4, V{0, 1}, StepBatch::Logits::kLast);
  // Sequence 9: a chunk whose every row wants logits.
  b.add(9, V{31, 32}, 0, V{2}, StepBatch::Logits::kAll);
  const ForwardBatch f = b.batch();
  EXPECT_EQ(V(f.tokens.begin(), f.tokens.end()), (V{11, 12, 13, 14, 15, 21, 31, 32}));
  EXPECT_EQ(V(f.positions.begin(), f.positions.end()), (V{2, 3, 4, 5, 6, 4, 0, 1}));
  EXPECT_EQ(V(f.slots.begin(), f.slots.end()), (V{38, 39, 12, 13, 14, 4, 8, 9}));
  EXPECT_EQ(V(f.query_start.begin(), f.query_start.end()), (V{0, 5, 6, 8}));
  EXPECT_EQ(V(f.context_lens.begin(), f.context_lens.end()), (V{7, 5, 2}));
  EXPECT_EQ(f.max_blocks_per_seq, 2);  // only the blocks the contexts reach
  EXPECT_EQ(V(f.block_tables.begin(), f.block_tables.end()), (V{9, 3, 0, 1, 2, 0}));
  EXPECT_EQ(V(f.logit_rows.begin(), f.logit_rows.end()), (V{4, 5, 6, 7}));
}

TEST(StepBatch, BadChunksAreRefusedAndChangeNothing) {
  StepBatch b(4, 10);
  b.add(1, V{5}, 0, V{0}, StepBatch::Logits::kLast);
  EXPECT_THROW(b.add(2, V{}, 0, V{1}, StepBatch::Logits::kLast), Error);               // empty
  EXPECT_THROW(b.add(2, V{1, 2, 3, 4, 5}, 0, V{1}, StepBatch::Logits::kLast), Error);  // short
  EXPECT_THROW(b.add(2, V{1}, 4, V{1, 10}, StepBatch::Logits::kLast), Error);          // block 10
  EXPECT_THROW(b.add(2, V{1}, -1, V{1}, StepBatch::Logits::kLast), Error);             // position
  try {
    b.add(42, V{1}, 0, V{-3}, StepBatch::Logits::kLast);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sequence 42"), std::string::npos) << e.what();
  }
  const ForwardBatch f = b.batch();
  EXPECT_EQ(f.tokens.size(), 1u);
  EXPECT_EQ(f.query_start.size(), 2u);
}

}  // namespace
}  // namespace tessera::model
