// Prefix caching through the scheduler: hits on shared full blocks, the last token is always
// computed, and cached blocks are evicted least recently released first.
#include <gtest/gtest.h>

#include "sched_test_util.h"
#include "tessera/scheduler/scheduler.h"

namespace tessera::scheduler {
namespace {

using testing::iota_prompt;
using testing::run_step;

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(PrefixCache, SharedThreeBlockPrefixStartsAt48) {
  Scheduler s({.num_blocks = 64, .block_size = 16});
  const auto prefix = iota_prompt(48, 1000);
  s.add(1, concat(prefix, iota_prompt(10, 1)), 4);
  auto first = run_step(s);  // prefills 58 tokens; its 3 full blocks get hashed after the step
  ASSERT_EQ(first.plan.chunks.size(), 1u);
  s.add(2, concat(prefix, iota_prompt(7, 500)), 4);
  auto second = run_step(s);
  const protocol::ExecuteChunk* c = testing::find_chunk(second.plan, 2);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->start_pos, 48);
  EXPECT_EQ(c->tokens.size(), 7u);
  ASSERT_EQ(c->block_table.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c->block_table[static_cast<size_t>(i)],
              first.plan.chunks[0].block_table[static_cast<size_t>(i)]);
    EXPECT_EQ(s.allocator().refcount(c->block_table[static_cast<size_t>(i)]), 2);
  }
  EXPECT_NE(c->block_table[3], first.plan.chunks[0].block_table[3]);  // writes its own block
  SchedulerStats st = s.stats();
  EXPECT_EQ(st.prefix_queried_tokens, 58u + 55u);
  EXPECT_EQ(st.prefix_hit_tokens, 48u);
  EXPECT_EQ(st.used_blocks, 4 + 1);
  EXPECT_EQ(s.check_invariants(), "");
}

// Data-parallel attention: a new sequence goes to the rank that holds the longest cached prefix
// of its prompt, else to the rank using the fewest blocks (the lower one on a tie), and keeps it.
TEST(PrefixCache, ANewSequenceGoesToTheRankHoldingItsPrefix) {
  Scheduler s({.num_blocks = 64, .block_size = 16, .attention_ranks = 2});
  const auto prefix = iota_prompt(32, 1000);
  s.add(1, concat(prefix, iota_prompt(5, 1)), 1);  // both ranks empty: rank 0
  auto first = run_step(s);                        // finishes at once: its blocks stay cached
  ASSERT_EQ(first.plan.chunks.size(), 1u);
  EXPECT_EQ(first.plan.chunks[0].attention_rank, 0);
  s.add(2, iota_prompt(40, 5000), 50);  // no prefix anywhere, rank 0 holds nothing: rank 0
  auto second = run_step(s);
  ASSERT_EQ(second.plan.chunks.size(), 1u);
  EXPECT_EQ(second.plan.chunks[0].attention_rank, 0);
  s.add(3, iota_prompt(40, 7000), 50);  // rank 0 now uses blocks for sequence 2: rank 1
  auto third = run_step(s);
  const protocol::ExecuteChunk* c3 = testing::find_chunk(third.plan, 3);
  ASSERT_NE(c3, nullptr);
  EXPECT_EQ(c3->attention_rank, 1);
  EXPECT_EQ(c3->start_pos, 0);
  // The prefix is cached on rank 0: a sequence sharing it goes there although rank 0 is no
  // emptier, and computes only past the two shared blocks.
  s.add(4, concat(prefix, iota_prompt(5, 2)), 1);
  auto fourth = run_step(s);
  const protocol::ExecuteChunk* c4 = testing::find_chunk(fourth.plan, 4);
  ASSERT_NE(c4, nullptr);
  EXPECT_EQ(c4->attention_rank, 0);
  EXPECT_EQ(c4->start_pos, 32);
  // Each rank's blocks are its own: block ids repeat across ranks, never within one.
  EXPECT_EQ(s.stats().total_blocks, 128);
  EXPECT_EQ(s.check_invariants(), "");
  // A sequence keeps its rank on every later step.
  for (int step = 0; step < 3; ++step) {
    auto out = run_step(s);
    for (const auto& ch : out.plan.chunks)
      EXPECT_EQ(ch.attention_rank, ch.seq_id == 3 ? 1 : 0) << "seq " << ch.seq_id;
  }
}

// Each attention rank has its own blocks: two sequences that each need a whole rank's blocks run
// side by side on two ranks, where one rank's blocks hold only one of them; and a sequence
// preempts only sequences of its own rank.
TEST(PrefixCache, EachAttentionRankHasItsOwnBlocks) {
  for (int ranks : {1, 2}) {
    SCOPED_TRACE(ranks);
    Scheduler s({.num_blocks = 4,
                 .block_size = 16,
                 .enable_prefix_caching = false,
                 .attention_ranks = ranks});
    s.add(2, iota_prompt(60, 1), 4);  // 4 blocks once it has decoded past 64
    s.add(3, iota_prompt(60, 100), 4);
    auto out = run_step(s);
    EXPECT_EQ(out.plan.chunks.size(), ranks == 2 ? 2u : 1u);
    EXPECT_EQ(s.stats().total_blocks, 4 * ranks);
    EXPECT_EQ(s.check_invariants(), "");
  }
}

TEST(PrefixCache, NeverTheWholePromptAndNoHitsWhenDisabled) {
  struct Case {
    bool enabled;
    int prompt_len;
    int expect_start;
  };
  for (Case c : {Case{true, 48, 32}, Case{true, 49, 48}, Case{true, 47, 32}, Case{false, 49, 0}}) {
    SCOPED_TRACE(::testing::Message() << c.enabled << " " << c.prompt_len);
    Scheduler s({.num_blocks = 64, .block_size = 16, .enable_prefix_caching = c.enabled});
    s.add(1, iota_prompt(c.prompt_len), 1);
    run_step(s);  // finishes at once (max_tokens 1): blocks stay cached
    s.add(2, iota_prompt(c.prompt_len), 1);
    auto out = run_step(s);
    ASSERT_EQ(out.plan.chunks.size(), 1u);
    EXPECT_EQ(out.plan.chunks[0].start_pos, c.expect_start);
    EXPECT_TRUE(out.plan.chunks[0].sample);
    EXPECT_EQ(s.stats().prefix_hit_tokens, static_cast<uint64_t>(c.expect_start));
  }
}

TEST(PrefixCache, EvictsLeastRecentlyReleasedCachedBlocks) {
  Scheduler s({.num_blocks = 6, .block_size = 4});
  const auto a = iota_prompt(8, 100), b = iota_prompt(8, 200);
  s.add(1, a, 1);
  run_step(s);  // A's 2 full blocks: cached
  s.add(2, b, 1);
  run_step(s);  // B's too
  EXPECT_EQ(s.stats().cached_blocks, 4);
  EXPECT_EQ(s.stats().free_blocks, 2);
  s.add(3, iota_prompt(16, 300), 1);  // needs 4: both plain free ones, then A's two
  auto out = run_step(s);
  ASSERT_EQ(out.plan.chunks.size(), 1u);
  EXPECT_EQ(s.stats().cached_blocks, 2 + 4);  // B's, and now C's own (C finished)
  s.add(4, b, 1);
  out = run_step(s);
  EXPECT_EQ(out.plan.chunks[0].start_pos, 4);  // B survived (one block: its last token computes)
  s.add(5, a, 1);
  out = run_step(s);
  EXPECT_EQ(out.plan.chunks[0].start_pos, 0);  // A was evicted
  SchedulerStats st = s.stats();
  EXPECT_EQ(st.used_blocks + st.free_blocks + st.cached_blocks, st.total_blocks);
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(PrefixCache, PreemptedSequenceRecomputesFromItsCachedPrefix) {
  Scheduler s({.num_blocks = 6, .block_size = 4});
  s.add(1, iota_prompt(8, 10), 12, /*priority=*/0);  // 20 tokens: 5 blocks
  s.add(2, iota_prompt(8, 90), 10, /*priority=*/1);  // 18: 5 blocks
  bool saw_preempt = false, saw_resume_from_cache = false;
  while (s.has_work()) {
    auto out = run_step(s);
    for (uint64_t id : out.plan.preempted) saw_preempt |= id == 2;
    if (const protocol::ExecuteChunk* c = testing::find_chunk(out.plan, 2);
        c && saw_preempt && c->start_pos > 0 && c->tokens.size() > 1)
      saw_resume_from_cache = true;
    ASSERT_EQ(s.check_invariants(), "");
  }
  EXPECT_TRUE(saw_preempt);
  EXPECT_TRUE(saw_resume_from_cache);
}

}  // namespace
}  // namespace tessera::scheduler
