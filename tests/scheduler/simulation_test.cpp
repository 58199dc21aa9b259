// Randomized simulation: hundreds of requests with random lengths, priorities, shared prefixes,
// aborts and early stops over a small KV cache. A fake model keeps a fake KV cache (one token id
// per slot) so that every chunk can be checked to read exactly its own history, and every step
// checks the plan and the scheduler's invariants. Every request that is not aborted or stopped
// early must finish with exactly max_tokens sampled tokens.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <set>

#include "sched_test_util.h"
#include "tessera/scheduler/scheduler.h"

namespace tessera::scheduler {
namespace {

struct SimCase {
  const char* name;
  SchedulerConfig cfg;
  int num_requests, max_prompt, max_gen;
};

struct Truth {  // what the fake engine knows about one request
  std::vector<int32_t> tokens;
  int max_tokens = 0, sampled = 0;
  bool done = false, dropped = false;  // finished by length / aborted or stopped early
};

class Sim {
 public:
  Sim(const SimCase& c, uint32_t seed)
      : c_(c),
        s_(c.cfg),
        rng_(seed),
        kv_(static_cast<size_t>(c.cfg.num_blocks * c.cfg.block_size), -1) {
    for (int i = 0; i < 3; ++i) prefixes_.push_back(random_tokens(c.max_prompt / 2 + 1));
  }

  void run() {
    uint64_t next_id = 1;
    for (int step = 0; step < 100000; ++step) {
      for (int k = static_cast<int>(rng_() % 4);
           k > 0 && next_id <= static_cast<uint64_t>(c_.num_requests); --k)
        add_request(next_id++);
      maybe_drop();
      if (!s_.has_work() && in_flight_.empty()) {
        if (next_id > static_cast<uint64_t>(c_.num_requests)) return;
        continue;
      }
      // Keep up to max_in_flight plans outstanding, as a pipeline of stages would; run the
      // oldest (in order, as every worker does) once the pipeline is full or nothing more fits.
      while (s_.has_work() &&
             static_cast<int>(in_flight_.size()) < std::max(1, c_.cfg.max_in_flight)) {
        StepPlan plan = s_.schedule();
        if (plan.empty()) break;
        check_plan(plan);
        if (::testing::Test::HasFatalFailure()) return;
        in_flight_.push_back(std::move(plan));
        if (rng_() % 2) break;  // sometimes run with the pipeline part full
      }
      ASSERT_FALSE(in_flight_.empty()) << "no progress at step " << step;
      run_oldest();
      if (::testing::Test::HasFatalFailure()) return;
      ASSERT_EQ(s_.check_invariants(), "") << "step " << step;
      SchedulerStats st = s_.stats();
      ASSERT_EQ(st.used_blocks + st.free_blocks + st.cached_blocks, st.total_blocks);
      ASSERT_LE(st.running, c_.cfg.max_num_seqs);
    }
    FAIL() << "did not drain: livelock";
  }

  void check_results() const {
    int completed = 0;
    for (const auto& [id, t] : truth_) {
      if (t.dropped) continue;
      EXPECT_TRUE(t.done) << "request " << id << " never finished";
      EXPECT_EQ(t.sampled, t.max_tokens) << "request " << id;
      completed += t.done;
    }
    EXPECT_GT(completed, c_.num_requests / 2);
    EXPECT_EQ(s_.stats().used_blocks, 0);
  }

  const Scheduler& sched() const { return s_; }

 private:
  std::vector<int32_t> random_tokens(int n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = static_cast<int32_t>(rng_() % 50000);
    return v;
  }

  void add_request(uint64_t id) {
    const int len = 1 + static_cast<int>(rng_() % static_cast<uint32_t>(c_.max_prompt));
    std::vector<int32_t> prompt;
    if (rng_() % 2) {  // half share a prefix: exercise the prefix cache
      const auto& p = prefixes_[rng_() % prefixes_.size()];
      prompt.assign(p.begin(), p.begin() + std::min<long>(len, static_cast<long>(p.size())));
    }
    auto tail = random_tokens(len - static_cast<int>(prompt.size()));
    prompt.insert(prompt.end(), tail.begin(), tail.end());
    Truth t{.tokens = prompt,
            .max_tokens = 1 + static_cast<int>(rng_() % static_cast<uint32_t>(c_.max_gen))};
    s_.add(id, prompt, t.max_tokens, static_cast<int>(rng_() % 3), static_cast<double>(id));
    truth_.emplace(id, std::move(t));
  }

  // Now and then a request is aborted or stopped early (EOS), running or waiting.
  void maybe_drop() {
    if (rng_() % 100 >= 3 || truth_.empty()) return;
    auto it = truth_.begin();
    std::advance(it, static_cast<long>(rng_() % truth_.size()));
    if (it->second.done || it->second.dropped) return;
    if (rng_() % 2)
      s_.abort(it->first);
    else
      s_.finish(it->first);
    it->second.dropped = true;
  }

  // At schedule time: the plan's shape, and that no sequence is in two outstanding plans.
  void check_plan(const StepPlan& plan) {
    const int bs = c_.cfg.block_size;
    std::set<uint64_t> ids;
    std::set<int32_t> written;
    int total = 0;
    for (const protocol::ExecuteChunk& c : plan.chunks) {
      Truth& t = truth_.at(c.seq_id);
      ASSERT_TRUE(ids.insert(c.seq_id).second) << "seq twice in a plan";
      ASSERT_FALSE(t.done || t.dropped);
      for (const StepPlan& other : in_flight_)
        for (const protocol::ExecuteChunk& o : other.chunks)
          ASSERT_NE(o.seq_id, c.seq_id) << "seq in two plans in flight";
      const size_t end = static_cast<size_t>(c.start_pos) + c.tokens.size();
      ASSERT_FALSE(c.tokens.empty());
      ASSERT_LE(end, t.tokens.size());
      ASSERT_EQ(c.sample, end == t.tokens.size());
      ASSERT_EQ(static_cast<int>(c.block_table.size()),
                kv_cache::blocks_for(static_cast<int64_t>(end), bs));
      total += static_cast<int>(c.tokens.size());
      // Writes: into blocks of its own, never shared, never written twice in a step.
      for (size_t p = static_cast<size_t>(c.start_pos); p < end; ++p) {
        ASSERT_EQ(c.tokens[p - static_cast<size_t>(c.start_pos)], t.tokens[p]);
        const int32_t b = c.block_table[p / static_cast<size_t>(bs)];
        ASSERT_EQ(s_.allocator().refcount(b), 1) << "write into shared block " << b;
        if (p % static_cast<size_t>(bs) == 0 || p == static_cast<size_t>(c.start_pos)) {
          ASSERT_TRUE(written.insert(b).second) << "block " << b << " written by two chunks";
        }
      }
    }
    ASSERT_EQ(total, plan.num_batched_tokens);
    ASSERT_LE(total, c_.cfg.max_num_batched_tokens);
  }

  // At run time, in plan order: every live chunk reads exactly its own history from the fake KV
  // cache (whatever plans ran before it), then writes and samples.
  void run_oldest() {
    const StepPlan plan = std::move(in_flight_.front());
    in_flight_.pop_front();
    std::vector<std::pair<uint64_t, int32_t>> sampled;
    for (const protocol::ExecuteChunk& c : plan.chunks) {
      const Truth& t = truth_.at(c.seq_id);
      if (!t.dropped) {
        for (size_t p = 0; p < static_cast<size_t>(c.start_pos); ++p) {
          ASSERT_EQ(kv_[slot(c, p)], t.tokens[p]) << "seq " << c.seq_id << " pos " << p;
        }
      }
      for (size_t i = 0; i < c.tokens.size(); ++i)  // a dropped sequence's step still writes
        kv_[slot(c, static_cast<size_t>(c.start_pos) + i)] = c.tokens[i];
      if (c.sample && !t.dropped)
        sampled.emplace_back(c.seq_id, testing::fake_token(c.seq_id, t.tokens.size()));
    }
    for (const auto& [id, tok] : sampled) {
      truth_.at(id).tokens.push_back(tok);
      ++truth_.at(id).sampled;
    }
    for (const auto& [id, cause] : s_.on_step_done(sampled)) {
      Truth& t = truth_.at(id);
      ASSERT_EQ(t.sampled, t.max_tokens) << "finished early: " << id;
      t.done = true;
    }
    for (const auto& [id, t] : truth_)
      if (!t.done && !t.dropped) {
        ASSERT_LT(t.sampled, t.max_tokens) << "ran past max_tokens: " << id;
      }
  }

  size_t slot(const protocol::ExecuteChunk& c, size_t pos) const {
    const auto bs = static_cast<size_t>(c_.cfg.block_size);
    return static_cast<size_t>(c.block_table[pos / bs]) * bs + pos % bs;
  }

  SimCase c_;
  Scheduler s_;
  std::mt19937 rng_;
  std::vector<int32_t> kv_;  // fake KV cache: the token id written at each slot
  std::vector<std::vector<int32_t>> prefixes_;
  std::map<uint64_t, Truth> truth_;
  std::deque<StepPlan> in_flight_;
};

TEST(SchedulerSimulation, RandomWorkloadsDrainWithInvariants) {
  const std::vector<SimCase> cases = {
      {"tiny cache, small budget",
       {.num_blocks = 16, .block_size = 4, .max_num_seqs = 8, .max_num_batched_tokens = 24},
       300,
       40,
       20},
      {"tiny cache, no prefix caching",
       {.num_blocks = 16,
        .block_size = 4,
        .max_num_seqs = 8,
        .max_num_batched_tokens = 24,
        .enable_prefix_caching = false},
       300,
       40,
       20},
      {"budget below a block",
       {.num_blocks = 12, .block_size = 8, .max_num_seqs = 4, .max_num_batched_tokens = 5},
       150,
       60,
       30},
      {"roomier",
       {.num_blocks = 48,
        .block_size = 8,
        .max_num_seqs = 16,
        .max_num_batched_tokens = 64,
        .max_model_len = 200},
       400,
       120,
       60},
      {"pipeline of 2, tiny cache",
       {.num_blocks = 16,
        .block_size = 4,
        .max_num_seqs = 8,
        .max_num_batched_tokens = 24,
        .max_in_flight = 2},
       300,
       40,
       20},
      {"pipeline of 3, roomier",
       {.num_blocks = 48,
        .block_size = 8,
        .max_num_seqs = 16,
        .max_num_batched_tokens = 64,
        .max_in_flight = 3},
       400,
       120,
       60},
  };
  const uint32_t seed = std::random_device{}();
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.name << ", seed " << seed);
    Sim sim(c, seed);
    sim.run();
    if (HasFatalFailure()) return;
    sim.check_results();
    const SchedulerStats st = sim.sched().stats();
    if (c.cfg.num_blocks <= 16) {
      EXPECT_GT(st.preemptions, 0u) << "cache never ran out";
    }
    if (c.cfg.enable_prefix_caching) {
      EXPECT_GT(st.prefix_hit_tokens, 0u);
    }
  }
}

}  // namespace
}  // namespace tessera::scheduler
