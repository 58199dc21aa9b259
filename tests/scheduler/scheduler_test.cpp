// Admission, chunking, batch mixing, refusals, abort and priorities: small tables of cases.
#include "tessera/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "sched_test_util.h"
#include "tessera/core/error.h"

namespace tessera::scheduler {
namespace {

using testing::chunk_sizes;
using testing::find_chunk;
using testing::iota_prompt;
using testing::run_step;

struct AdmissionCase {
  const char* name;
  SchedulerConfig cfg;
  std::vector<int> prompt_lens;
  int max_tokens;
  std::vector<int> first_step_chunks;  // sizes, in admission order
};

TEST(Scheduler, AdmissionLimits) {
  const std::vector<AdmissionCase> cases = {
      {"max_num_seqs",
       {.num_blocks = 64, .block_size = 4, .max_num_seqs = 2},
       {4, 4, 4, 4},
       4,
       {4, 4}},
      {"token budget chunks the last",
       {.num_blocks = 64, .block_size = 4, .max_num_batched_tokens = 10},
       {4, 4, 4, 4},
       4,
       {4, 4, 2}},
      {"free blocks", {.num_blocks = 5, .block_size = 4}, {8, 8, 8}, 4, {8, 8}},
      {"head of line blocks FCFS", {.num_blocks = 6, .block_size = 4}, {12, 16, 2}, 4, {12}},
      {"everything fits", {.num_blocks = 64, .block_size = 16}, {30, 1, 17}, 8, {30, 1, 17}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Scheduler s(c.cfg);
    for (size_t i = 0; i < c.prompt_lens.size(); ++i)
      s.add(i + 1, iota_prompt(c.prompt_lens[i]), c.max_tokens);
    StepPlan p = s.schedule();
    EXPECT_EQ(chunk_sizes(p), c.first_step_chunks);
    for (size_t i = 0; i < p.chunks.size(); ++i) EXPECT_EQ(p.chunks[i].seq_id, i + 1);
    EXPECT_LE(p.num_batched_tokens, c.cfg.max_num_batched_tokens);
    EXPECT_EQ(s.stats().running, static_cast<int>(c.first_step_chunks.size()));
    EXPECT_EQ(s.check_invariants(), "");
  }
}

struct ChunkCase {
  int prompt_len, budget, block_size;
  std::vector<int> sizes;  // per step until the first sample, then one decode
};

TEST(Scheduler, ChunkedPrefillSizesAcrossSteps) {
  const std::vector<ChunkCase> cases = {
      {100, 32, 16, {32, 32, 32, 4, 1}},
      {64, 64, 16, {64, 1}},
      {5, 2, 4, {2, 2, 1, 1}},
      {17, 16, 16, {16, 1, 1}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "prompt " << c.prompt_len << " budget " << c.budget);
    Scheduler s({.num_blocks = 64, .block_size = c.block_size, .max_num_batched_tokens = c.budget});
    s.add(7, iota_prompt(c.prompt_len), 3);
    int pos = 0;
    for (size_t step = 0; step < c.sizes.size(); ++step) {
      auto out = run_step(s);
      ASSERT_EQ(out.plan.chunks.size(), 1u);
      const protocol::ExecuteChunk& ch = out.plan.chunks[0];
      EXPECT_EQ(static_cast<int>(ch.tokens.size()), c.sizes[step]);
      EXPECT_EQ(ch.start_pos, pos);
      pos += c.sizes[step];
      EXPECT_EQ(ch.sample, pos >= c.prompt_len);
      EXPECT_EQ(static_cast<int>(ch.block_table.size()), kv_cache::blocks_for(pos, c.block_size));
      if (pos <= c.prompt_len) {  // prompt tokens are fed as given
        EXPECT_EQ(ch.tokens.front(), ch.start_pos + 1);
      }
      EXPECT_EQ(s.check_invariants(), "");
    }
  }
}

TEST(Scheduler, DecodesFirstThenContinuingPrefillsThenAdmissions) {
  Scheduler s({.num_blocks = 64, .block_size = 4, .max_num_batched_tokens = 16});
  s.add(1, iota_prompt(5), 20);
  run_step(s);  // 1 prefilled, sampled: now decoding
  s.add(2, iota_prompt(50, 100), 4);
  auto out = run_step(s);
  ASSERT_EQ(chunk_sizes(out.plan), (std::vector<int>{1, 15}));
  EXPECT_EQ(out.plan.chunks[0].seq_id, 1u);
  EXPECT_TRUE(out.plan.chunks[0].sample);
  EXPECT_FALSE(out.plan.chunks[1].sample);
  s.add(3, iota_prompt(3, 500), 4);  // arrives while 2 is mid-prefill: 2 keeps the budget
  out = run_step(s);
  EXPECT_EQ(chunk_sizes(out.plan), (std::vector<int>{1, 15}));
  EXPECT_EQ(find_chunk(out.plan, 3), nullptr);
  EXPECT_EQ(out.plan.chunks[1].start_pos, 15);
  s.abort(1);  // frees budget: 2 continues (20 left, takes 16)
  out = run_step(s);
  EXPECT_EQ(chunk_sizes(out.plan), (std::vector<int>{16}));
  out = run_step(s);  // 2 finishes its prompt (4), then 3 is admitted in the same step
  EXPECT_EQ(chunk_sizes(out.plan), (std::vector<int>{4, 3}));
  EXPECT_EQ(out.plan.chunks[1].seq_id, 3u);
  EXPECT_EQ(out.plan.num_batched_tokens, 7);
}

struct RefusalCase {
  const char* name;
  SchedulerConfig cfg;
  int prompt_len, max_tokens;
  ErrorCode code;
  std::vector<std::string> mentions;
};

// What the engine's validation guarantees is asserted (kInternal), not validated again.
TEST(Scheduler, RefusesWhatCanNeverFit) {
  const std::vector<RefusalCase> cases = {
      {"context",
       {.num_blocks = 64, .max_model_len = 128},
       100,
       30,
       ErrorCode::kInternal,
       {"100", "30", "128"}},
      {"cache",
       {.num_blocks = 4, .block_size = 16},
       60,
       10,
       ErrorCode::kInternal,
       {"60", "10", "64 tokens"}},
      {"empty prompt", {.num_blocks = 4}, 0, 10, ErrorCode::kInternal, {"not validated"}},
      {"max_tokens", {.num_blocks = 4}, 3, 0, ErrorCode::kInternal, {"max_tokens 0"}},
      {"queue full",
       {.num_blocks = 4, .max_waiting = 0},
       3,
       1,
       ErrorCode::kResourceExhausted,
       {"full"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Scheduler s(c.cfg);
    try {
      s.add(1, iota_prompt(c.prompt_len), c.max_tokens);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), c.code) << e.what();
      for (const auto& m : c.mentions)
        EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << e.what();
    }
    EXPECT_FALSE(s.has_work());
  }
  // Exactly at the limits is fine.
  Scheduler s({.num_blocks = 4, .block_size = 16, .max_model_len = 64});
  EXPECT_NO_THROW(s.add(1, iota_prompt(54), 10));
  EXPECT_THROW(s.add(1, iota_prompt(4), 1), Error);  // duplicate id
}

TEST(Scheduler, FullWaitingQueueRefusesThenAcceptsAgain) {
  Scheduler s({.num_blocks = 8, .max_num_seqs = 1, .max_waiting = 2});
  s.add(1, iota_prompt(4), 2);
  s.add(2, iota_prompt(4), 2);
  try {
    s.add(3, iota_prompt(4), 2);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
  }
  run_step(s);  // admits 1: one waiting slot frees up
  EXPECT_NO_THROW(s.add(3, iota_prompt(4), 2));
}

TEST(Scheduler, AbortFreesBlocksAtOnce) {
  Scheduler s({.num_blocks = 16, .block_size = 4, .max_num_batched_tokens = 8});
  s.add(1, iota_prompt(30), 5);
  s.add(2, iota_prompt(6), 5);
  run_step(s);  // 1 holds 2 blocks, 2 waits
  EXPECT_EQ(s.stats().used_blocks, 2);
  s.abort(2);
  s.abort(99);  // unknown: ignored
  EXPECT_EQ(s.stats().waiting, 0);
  StepPlan p = s.schedule();
  s.abort(1);  // while its step is in flight: blocks freed now, its sample (if any) ignored
  SchedulerStats st = s.stats();
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(st.free_blocks + st.cached_blocks, st.total_blocks);
  EXPECT_NO_THROW(s.on_step_done({{1, 5}}));
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(s.check_invariants(), "");
}

// The workers hear of every sequence that ended after a chunk of it went out, exactly once, in
// the next plan's `finished` (a plan of its own when nothing else runs); one never sent is not
// listed.
TEST(Scheduler, EndedSequencesAreListedForTheWorkersOnce) {
  Scheduler s({.num_blocks = 16, .block_size = 4, .max_num_seqs = 1});
  s.add(1, iota_prompt(3), 1);  // finishes by length in its first step
  s.add(2, iota_prompt(3), 5);  // waits behind 1 (one running sequence at a time)
  testing::StepOutcome first = run_step(s);
  EXPECT_TRUE(first.plan.finished.empty());
  EXPECT_EQ(first.finished, (std::vector<uint64_t>{1}));
  testing::StepOutcome second = run_step(s);
  EXPECT_EQ(second.plan.finished, (std::vector<uint64_t>{1}));
  ASSERT_EQ(second.plan.chunks.size(), 1u);  // and 2 starts in the same plan
  s.add(3, iota_prompt(3), 5);
  s.abort(3);  // never sent: the workers never knew it
  s.abort(2);
  EXPECT_FALSE(s.has_work());
  EXPECT_TRUE(s.has_ended());
  StepPlan news = s.schedule();
  EXPECT_TRUE(news.chunks.empty());
  EXPECT_EQ(news.finished, (std::vector<uint64_t>{2}));
  EXPECT_EQ(s.plans_in_flight(), 1u);  // in flight like any plan, so the news arrive in order
  EXPECT_TRUE(s.on_step_done({}).empty());
  EXPECT_FALSE(s.has_ended());
  EXPECT_TRUE(s.schedule().empty());
}

// A failed step: its sequences are aborted (their KV state on the workers is unknown), returned
// to the caller, and listed for the workers to drop; the other plan in flight is unaffected.
TEST(Scheduler, FailedStepAbortsItsSequences) {
  Scheduler s({.num_blocks = 16, .block_size = 4, .max_in_flight = 2});
  s.add(1, iota_prompt(3), 5);
  s.add(2, iota_prompt(3), 5);
  StepPlan a = s.schedule();
  StepPlan b = s.schedule();
  ASSERT_EQ(a.chunks.size(), 1u);
  ASSERT_EQ(b.chunks.size(), 1u);
  const uint64_t failed = a.chunks[0].seq_id, ok = b.chunks[0].seq_id;
  EXPECT_EQ(s.on_step_failed(), (std::vector<uint64_t>{failed}));
  EXPECT_FALSE(s.contains(failed));
  EXPECT_TRUE(s.contains(ok));
  EXPECT_NO_THROW(s.on_step_done({{ok, 7}}));
  EXPECT_THROW(s.on_step_failed(), Error);  // nothing in flight
  StepPlan next = s.schedule();
  EXPECT_EQ(next.finished, (std::vector<uint64_t>{failed}));
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(Scheduler, StepResultMisuseIsRejected) {
  Scheduler s({.num_blocks = 16, .block_size = 4});
  s.add(1, iota_prompt(3), 5);
  s.add(2, iota_prompt(3), 5);
  s.schedule();
  EXPECT_THROW(s.on_step_done({{1, 7}}), Error);          // 2 got no token
  EXPECT_THROW(s.on_step_done({{1, 7}, {3, 1}}), Error);  // 3 was not in the plan... and 2 missing
  EXPECT_NO_THROW(s.on_step_done({{1, 7}, {2, 8}}));
  EXPECT_EQ(s.check_invariants(), "");
}

// Stop tokens are the scheduler's decision too: the sequence that samples one is finished and
// freed in that on_step_done, named with its cause; a stop token on the last allowed token is a
// stop (not a length) finish; other sequences go on.
TEST(Scheduler, StopTokensFinishTheirSequenceWithTheirCause) {
  Scheduler s({.num_blocks = 16, .block_size = 4});
  s.add({.seq_id = 1, .prompt = iota_prompt(3), .max_tokens = 5, .stop_token_ids = {42, 43}});
  s.add({.seq_id = 2, .prompt = iota_prompt(3), .max_tokens = 5, .stop_token_ids = {42}});
  s.add({.seq_id = 3, .prompt = iota_prompt(3), .max_tokens = 1, .stop_token_ids = {9}});
  s.schedule();
  auto done = s.on_step_done({{1, 43}, {2, 43}, {3, 9}});
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].seq_id, 1u);
  EXPECT_EQ(done[0].cause, FinishCause::kStopToken);
  EXPECT_EQ(done[1].seq_id, 3u);
  EXPECT_EQ(done[1].cause, FinishCause::kStopToken);  // also its max_tokens: the stop wins
  EXPECT_FALSE(s.contains(1));
  EXPECT_TRUE(s.contains(2));  // 43 is not its stop token
  s.schedule();
  done = s.on_step_done({{2, 42}});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].cause, FinishCause::kStopToken);
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(Scheduler, MaxTokensFinishesBySelf) {
  Scheduler s({.num_blocks = 16, .block_size = 4});
  s.add(1, iota_prompt(3), 3);
  std::vector<uint64_t> done;
  int steps = 0;
  while (s.has_work()) {
    auto out = run_step(s);
    done.insert(done.end(), out.finished.begin(), out.finished.end());
    ++steps;
  }
  EXPECT_EQ(steps, 3);  // prefill+sample, then two decodes
  EXPECT_EQ(done, (std::vector<uint64_t>{1}));
  s.finish(1);  // already gone: no-op
  EXPECT_EQ(s.stats().used_blocks, 0);
}

TEST(Scheduler, PriorityThenArrivalOrdersAdmission) {
  Scheduler s({.num_blocks = 64, .block_size = 4, .max_num_seqs = 1});
  s.add(1, iota_prompt(4), 1, /*priority=*/5, /*arrival=*/0.0);
  s.add(2, iota_prompt(4), 1, /*priority=*/0, /*arrival=*/3.0);
  s.add(3, iota_prompt(4), 1, /*priority=*/0, /*arrival=*/1.0);
  std::vector<uint64_t> order;
  while (s.has_work()) {
    auto out = run_step(s);
    for (auto& c : out.plan.chunks) order.push_back(c.seq_id);
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{3, 2, 1}));
}

// Two decoding sequences outgrow a 4-block cache: the worse-ranked one is preempted by
// recompute, comes back, and both produce exactly the tokens an uncontended run produces.
TEST(Scheduler, PreemptsWorstRankedAndRecomputes) {
  for (bool prefix : {false, true}) {
    SCOPED_TRACE(prefix ? "prefix caching" : "no prefix caching");
    Scheduler s({.num_blocks = 4, .block_size = 4, .enable_prefix_caching = prefix});
    s.add(1, iota_prompt(4), 8, /*priority=*/1, /*arrival=*/0.0);
    s.add(2, iota_prompt(4, 50), 8, /*priority=*/0, /*arrival=*/1.0);  // better rank
    std::vector<uint64_t> preempted, finished;
    std::map<uint64_t, std::vector<int32_t>> fed;
    for (int step = 0; s.has_work() && step < 100; ++step) {
      auto out = run_step(s);
      ASSERT_FALSE(out.plan.empty());
      for (auto& c : out.plan.chunks)
        if (c.start_pos == 0) fed[c.seq_id].clear();
      for (auto& c : out.plan.chunks) fed[c.seq_id].resize(static_cast<size_t>(c.start_pos));
      for (auto& c : out.plan.chunks)
        fed[c.seq_id].insert(fed[c.seq_id].end(), c.tokens.begin(), c.tokens.end());
      preempted.insert(preempted.end(), out.plan.preempted.begin(), out.plan.preempted.end());
      finished.insert(finished.end(), out.finished.begin(), out.finished.end());
      ASSERT_EQ(s.check_invariants(), "");
    }
    EXPECT_FALSE(s.has_work());
    ASSERT_FALSE(preempted.empty());
    EXPECT_EQ(preempted.front(), 1u);  // priority 1 loses to priority 0 despite arriving first
    EXPECT_GE(s.stats().preemptions, 1u);
    EXPECT_EQ(finished.size(), 2u);
    for (uint64_t id : {1u, 2u}) {  // fed = prompt + 7 sampled tokens, as the fake model chose
      const auto& f = fed[id];
      ASSERT_EQ(f.size(), 11u);
      for (size_t i = 4; i < f.size(); ++i) EXPECT_EQ(f[i], testing::fake_token(id, i));
    }
  }
}

}  // namespace
}  // namespace tessera::scheduler

namespace tessera::scheduler {
namespace {

// Pipeline parallelism: with 2 plans in flight, 8 sequences split into two micro-batches of 4,
// no sequence is in both, and a finished plan's sequences go into the next one.
TEST(Scheduler, PlansInFlightSplitTheSequences) {
  Scheduler s({.num_blocks = 64,
               .block_size = 4,
               .max_num_seqs = 16,
               .max_num_batched_tokens = 256,
               .max_in_flight = 2});
  for (uint64_t id = 1; id <= 8; ++id) s.add(id, {1, 2, 3}, 5);
  const StepPlan a = s.schedule(), b = s.schedule();
  ASSERT_EQ(a.chunks.size(), 4u);
  ASSERT_EQ(b.chunks.size(), 4u);
  std::set<uint64_t> ids;
  for (const auto* p : {&a, &b})
    for (const auto& c : p->chunks) EXPECT_TRUE(ids.insert(c.seq_id).second) << c.seq_id;
  EXPECT_EQ(s.plans_in_flight(), 2u);
  std::vector<std::pair<uint64_t, int32_t>> sampled;
  for (const auto& c : a.chunks) sampled.emplace_back(c.seq_id, 7);
  s.on_step_done(sampled);  // a's four may run again; b's are still in flight
  const StepPlan c = s.schedule();
  ASSERT_EQ(c.chunks.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(c.chunks[i].seq_id, a.chunks[i].seq_id);
  EXPECT_EQ(s.check_invariants(), "");
}

}  // namespace
}  // namespace tessera::scheduler
