// The engine's step loop without any model file: LlmEngine over a fake executor (injected through
// its ExecutorFactory) and the small test tokenizer. The fake checks every plan it is given
// (positions continue where the sequence left off, block tables cover them, batch limits hold)
// and answers with a token that depends only on the position it is sampled at, so each request's
// expected text is known whatever the batching, chunking or preemption did. Covers admission and
// queueing, chunked prefill, preemption by recompute, pipelined plans (2 in flight), EOS, stop
// strings, aborts, deadlines, a failed step, a worker death during a step and while idle.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "../common/small_tokenizer.h"
#include "output_collector.h"
#include "tessera/core/error.h"
#include "tessera/engine/llm_engine.h"

namespace tessera::engine {
namespace {

using protocol::FinishReason;

constexpr int kBlockSize = 4;
constexpr int kNumBlocks = 24;  // 96 tokens of KV: four 30-token sequences do not fit at once
constexpr int kMaxSeqs = 4;
constexpr int kBudget = 16;  // tokens per step: longer prompts are prefilled in chunks

// The token sampled after position p: a letter, so the text is readable ('a' is byte token 97).
int32_t token_at(int32_t pos) { return 97 + pos % 26; }
std::string expected_text(int prompt_len, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += char(token_at(prompt_len + i));
  return s;
}

// What the fakes saw, and the faults the test asks for. Shared by the test thread, the engine
// thread and every executor the factory builds (one per worker "restart").
struct World {
  std::mutex mu;
  int executors_built = 0;
  int steps = 0;
  int max_batch_seqs = 0;
  int max_batch_tokens = 0;
  int chunked_prefills = 0;  // prompt chunks that did not sample (more prompt to come)
  int recomputes = 0;        // a known sequence fed again from an earlier position (preempted)
  int prefix_hits = 0;       // a new sequence's first chunk starting past 0 (cached blocks)
  std::map<uint64_t, int32_t> fed;  // tokens each sequence has in its KV (as the fake sees it)
  std::vector<uint64_t> dropped;    // ids the engine told the worker to forget
  std::vector<std::string> violations;
  int eos_id = -1;
  int eos_at = -1;              // position at which EOS is sampled (-1: never)
  int fail_steps = 0;           // the next N steps throw (worker stays alive)
  bool die_in_step = false;     // the next step kills the worker
  bool die_while_idle = false;  // check_alive() reports the worker dead
  int step_sleep_ms = 0;
  int in_flight = 1;
};

class FakeExecutor final : public SyncExecutor {
 public:
  FakeExecutor(std::shared_ptr<World> w, int vocab) : w_(std::move(w)) {
    info_ = {.vocab_size = vocab,
             .max_position = 256,
             .num_layers = 1,
             .num_blocks = kNumBlocks,
             .block_size = kBlockSize,
             .layout = "fake"};
    std::lock_guard lock(w_->mu);
    ++w_->executors_built;
    in_flight_ = w_->in_flight;
  }
  const ExecutorInfo& info() const override { return info_; }
  bool alive() const override { return alive_; }
  int max_in_flight() const override { return in_flight_; }
  bool check_alive() override {
    std::lock_guard lock(w_->mu);
    if (w_->die_while_idle) {
      w_->die_while_idle = false;
      alive_ = false;
      failure_ = "fake worker died while idle";
    }
    return alive_;
  }
  std::string failure() const override { return failure_; }

  protocol::ExecuteResult run(const protocol::ExecutePlan& plan) override {
    if (!alive_) throw Error(ErrorCode::kInternal, "fake worker is dead");
    int sleep_ms = 0;
    protocol::ExecuteResult out;
    {
      std::lock_guard lock(w_->mu);
      sleep_ms = w_->step_sleep_ms;
      ++w_->steps;
      if (w_->die_in_step) {
        w_->die_in_step = false;
        alive_ = false;
        failure_ = "fake worker killed";
        throw Error(ErrorCode::kInternal, failure_);
      }
      if (w_->fail_steps > 0) {
        --w_->fail_steps;
        throw Error(ErrorCode::kInternal, "fake step error");
      }
      for (const auto& ns : plan.new_sequences) {
        if (w_->fed.contains(ns.seq_id)) violation("sequence ", ns.seq_id, " announced twice");
        w_->fed[ns.seq_id] = -1;  // not fed yet: may start at a cached block boundary
      }
      int tokens = 0;
      for (const auto& ch : plan.chunks) {
        tokens += int(ch.tokens.size());
        auto it = w_->fed.find(ch.seq_id);
        if (it == w_->fed.end()) {
          violation("chunk for unknown sequence ", ch.seq_id);
          continue;
        }
        if (it->second == -1) {
          if (ch.start_pos % kBlockSize != 0)
            violation("sequence ", ch.seq_id, " starts at ", ch.start_pos, ", inside a block");
          if (ch.start_pos > 0) ++w_->prefix_hits;
        } else if (ch.start_pos < it->second) {
          // Preempted and readmitted: recomputed from its first block not in the prefix cache.
          if (ch.start_pos % kBlockSize != 0)
            violation("sequence ", ch.seq_id, " resumes at ", ch.start_pos, ", inside a block");
          ++w_->recomputes;
        } else if (ch.start_pos != it->second)
          violation("sequence ", ch.seq_id, " fed at ", ch.start_pos, " after ", it->second);
        const int32_t end = ch.start_pos + int32_t(ch.tokens.size());
        if (int64_t(ch.block_table.size()) * kBlockSize < end)
          violation("sequence ", ch.seq_id, ": ", ch.block_table.size(), " blocks for ", end,
                    " tokens");
        for (int32_t b : ch.block_table)
          if (b < 0 || b >= kNumBlocks) violation("block ", b, " out of the pool");
        it->second = end;
        if (!ch.sample) {
          ++w_->chunked_prefills;
          continue;
        }
        const int32_t t = (end == w_->eos_at) ? w_->eos_id : token_at(end);
        out.sampled.push_back({.seq_id = ch.seq_id, .result = {.token = t}});
      }
      w_->max_batch_seqs = std::max(w_->max_batch_seqs, int(plan.chunks.size()));
      w_->max_batch_tokens = std::max(w_->max_batch_tokens, tokens);
      for (uint64_t id : plan.finished) {
        w_->dropped.push_back(id);
        w_->fed.erase(id);
      }
    }
    if (sleep_ms) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    return out;
  }

 private:
  template <typename... A>
  void violation(const A&... a) {
    std::ostringstream os;
    (os << ... << a);
    w_->violations.push_back(os.str());
  }
  std::shared_ptr<World> w_;
  ExecutorInfo info_;
  int in_flight_ = 1;
  bool alive_ = true;
  std::string failure_;
};

using Collector = testing::OutputCollector;

class StepLoop : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    world_->in_flight = GetParam();
    auto tok = std::make_unique<tokenizer::Tokenizer>(tessera::testing::small_chatml_tokenizer());
    world_->eos_id = tok->eos_id();
    const int vocab = tok->vocab_size();
    auto w = world_;
    engine_ = std::make_unique<LlmEngine>(
        EngineConfig{.model_path = "(fake)",
                     .served_model_name = "fake",
                     .limits = {.max_num_seqs = kMaxSeqs, .max_num_batched_tokens = kBudget}},
        [w, vocab] { return std::make_unique<FakeExecutor>(w, vocab); }, std::move(tok));
    engine_->start();
  }
  void TearDown() override {
    engine_->shutdown(0.0);
    std::lock_guard lock(world_->mu);
    for (const auto& v : world_->violations) ADD_FAILURE() << "plan violation: " << v;
  }
  // A prompt of printable bytes that differs per `variant` (so no prefix is shared by chance).
  protocol::GenerationRequest request(const std::string& id, int prompt_len, int max_tokens,
                                      int variant = 0) {
    protocol::GenerationRequest r;
    r.request_id = id;
    for (int i = 0; i < prompt_len; ++i)
      r.prompt_ids.push_back(int32_t(33 + (i + 7 * variant) % 90));
    r.stopping.max_tokens = max_tokens;
    r.stopping.ignore_eos = true;
    return r;
  }
  void expect_fault_then_recovery(const std::string& error, int executors);
  template <typename F>
  void with_world(F f) {
    std::lock_guard lock(world_->mu);
    f(*world_);
  }

  std::shared_ptr<World> world_ = std::make_shared<World>();
  std::unique_ptr<LlmEngine> engine_;
};

TEST_P(StepLoop, ManyRequestsGetTheirOwnTokensThroughChunkingAndPreemption) {
  constexpr int kRequests = 16;
  std::vector<std::unique_ptr<Collector>> c;
  // Slow steps while submitting, so that all requests compete for the KV cache at once however
  // the threads are scheduled (on a loaded machine the loop could otherwise finish the early ones
  // before the late ones arrive, and nothing would be preempted).
  with_world([](World& w) { w.step_sleep_ms = 20; });
  for (int i = 0; i < kRequests; ++i) {
    c.push_back(std::make_unique<Collector>());
    engine_->submit(engine_->validate(request("r" + std::to_string(i), 18 + i % 5, 8 + i % 5, i + 1)),
                    c.back()->callback());
  }
  with_world([](World& w) { w.step_sleep_ms = 0; });
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(c[i]->wait()) << "request " << i << " never finished";
    EXPECT_EQ(c[i]->finish, FinishReason::kLength) << i << ": " << c[i]->error;
    EXPECT_EQ(c[i]->text, expected_text(18 + i % 5, 8 + i % 5)) << "request " << i;
    EXPECT_EQ(c[i]->completion_tokens, 8 + i % 5);
  }
  with_world([&](World& w) {
    EXPECT_LE(w.max_batch_seqs, kMaxSeqs);
    EXPECT_LE(w.max_batch_tokens, kBudget);
    EXPECT_GT(w.chunked_prefills, 0) << "prompts over the token budget are prefilled in chunks";
    EXPECT_GT(w.recomputes, 0) << "four 30-token sequences in 96 tokens of KV must preempt";
  });
  EXPECT_GT(engine_->metrics().value("tessera:num_preemptions_total"), 0.0);
  // Every finished sequence is eventually dropped on the worker (a later step carries the list).
  Collector last;
  engine_->submit(engine_->validate(request("last", 4, 2)), last.callback());
  ASSERT_TRUE(last.wait());
  with_world([&](World& w) { EXPECT_GE(w.dropped.size(), size_t(kRequests)); });
}

TEST_P(StepLoop, ARepeatedPromptStartsAfterItsCachedBlocks) {
  for (const char* id : {"first", "again"}) {
    Collector c;
    engine_->submit(engine_->validate(request(id, 21, 5, 3)), c.callback());
    ASSERT_TRUE(c.wait());
    EXPECT_EQ(c.text, expected_text(21, 5)) << id;
  }
  with_world([](World& w) { EXPECT_EQ(w.prefix_hits, 1); });
}

TEST_P(StepLoop, EosAndStopStringsEndRequests) {
  with_world([](World& w) { w.eos_at = 10 + 3; });  // prompt 10: EOS as the 4th token
  Collector eos;
  auto r = request("eos", 10, 20);
  r.stopping.ignore_eos = false;
  engine_->submit(engine_->validate(r), eos.callback());
  ASSERT_TRUE(eos.wait());
  EXPECT_EQ(eos.finish, FinishReason::kStop);
  EXPECT_EQ(eos.text, expected_text(10, 3));  // EOS itself is not text
  // A request's own stop token ('o', sampled after position 14) ends it even with ignore_eos;
  // the stop token is not text.
  with_world([](World& w) { w.eos_at = -1; });
  Collector tok;
  auto st = request("stop-token", 10, 20);
  st.stopping.stop_token_ids = {token_at(14)};
  engine_->submit(engine_->validate(st), tok.callback());
  ASSERT_TRUE(tok.wait());
  EXPECT_EQ(tok.finish, FinishReason::kStop);
  EXPECT_EQ(tok.text, "klmn");
  EXPECT_EQ(tok.completion_tokens, 5);
  // Stop string: the text from prompt length 10 is "klmnop...": stop at "mn".
  Collector stop;
  auto s = request("stop", 10, 20);
  s.stopping.stop = {"mn"};
  engine_->submit(engine_->validate(s), stop.callback());
  ASSERT_TRUE(stop.wait());
  EXPECT_EQ(stop.finish, FinishReason::kStop);
  EXPECT_EQ(stop.text, "kl");
  EXPECT_EQ(stop.matched, std::optional<std::string>("mn"));
}

TEST_P(StepLoop, AbortsAndDeadlinesEndOnlyTheirRequest) {
  with_world([](World& w) { w.step_sleep_ms = 5; });
  Collector a, d, ok;
  engine_->submit(engine_->validate(request("abort-me", 8, 80, 1)), a.callback());
  auto r = request("deadline", 8, 80, 2);
  r.deadline = protocol::Clock::now() + std::chrono::milliseconds(100);
  engine_->submit(engine_->validate(r), d.callback());
  engine_->submit(engine_->validate(request("ok", 8, 30, 3)), ok.callback());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  engine_->abort("abort-me");
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(d.wait());
  ASSERT_TRUE(ok.wait());
  EXPECT_EQ(a.finish, FinishReason::kAbort);
  EXPECT_EQ(d.finish, FinishReason::kError);
  EXPECT_NE(d.error.find("deadline"), std::string::npos) << d.error;
  EXPECT_EQ(ok.finish, FinishReason::kLength);
  EXPECT_EQ(ok.text, expected_text(8, 30));
}

// A fault in the step of one request fails that request with `error`; the next request is served
// (by a new executor when the fault killed the worker: `executors` built in all).
void StepLoop::expect_fault_then_recovery(const std::string& error, int executors) {
  Collector lost;
  engine_->submit(engine_->validate(request("lost", 6, 4)), lost.callback());
  ASSERT_TRUE(lost.wait());
  EXPECT_EQ(lost.finish, FinishReason::kError);
  EXPECT_NE(lost.error.find(error), std::string::npos) << lost.error;
  Collector next;
  engine_->submit(engine_->validate(request("next", 6, 4)), next.callback());
  ASSERT_TRUE(next.wait());
  EXPECT_EQ(next.finish, FinishReason::kLength) << next.error;
  EXPECT_EQ(next.text, expected_text(6, 4));
  with_world([&](World& w) { EXPECT_EQ(w.executors_built, executors); });
  EXPECT_TRUE(engine_->ready());
}

TEST_P(StepLoop, AFailedStepFailsItsRequestsAndTheNextOnesRun) {
  with_world([](World& w) { w.fail_steps = 1; });
  expect_fault_then_recovery("fake step error", /*executors=*/1);  // a step error is no restart
}

TEST_P(StepLoop, AWorkerDeathFailsItsRequestsAndANewWorkerServesTheNext) {
  with_world([](World& w) { w.die_in_step = true; });
  expect_fault_then_recovery("worker failed", /*executors=*/2);
  EXPECT_EQ(engine_->metrics().value("tessera:worker_restarts_total"), 1.0);
}

TEST_P(StepLoop, AWorkerFoundDeadWhileIdleIsReplacedBeforeARequestPaysForIt) {
  with_world([](World& w) { w.die_while_idle = true; });
  for (int i = 0; i < 100; ++i) {  // the idle loop checks every 500 ms
    bool rebuilt = false;
    with_world([&](World& w) { rebuilt = w.executors_built == 2; });
    if (rebuilt) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  with_world([](World& w) { EXPECT_EQ(w.executors_built, 2); });
  Collector c;
  engine_->submit(engine_->validate(request("after", 6, 4)), c.callback());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.finish, FinishReason::kLength) << c.error;
}

TEST_P(StepLoop, RequestsTheEngineCannotServeAreRefusedAtSubmit) {
  auto bad_token = request("bad", 4, 4);
  bad_token.prompt_ids[0] = 1 << 20;
  EXPECT_THROW(engine_->submit(engine_->validate(bad_token), [](const protocol::RequestOutput&) {}), Error);
  // 90 prompt + 20 generated tokens need 28 blocks; the pool has 24.
  EXPECT_THROW(engine_->submit(engine_->validate(request("too-long", 90, 20)), [](const protocol::RequestOutput&) {}),
               Error);
  Collector dup1, dup2;
  with_world([](World& w) { w.step_sleep_ms = 5; });
  engine_->submit(engine_->validate(request("same", 4, 50)), dup1.callback());
  engine_->submit(engine_->validate(request("same", 4, 50)), dup2.callback());
  ASSERT_TRUE(dup2.wait());
  EXPECT_EQ(dup2.finish, FinishReason::kError);
  EXPECT_NE(dup2.error.find("already in use"), std::string::npos) << dup2.error;
  ASSERT_TRUE(dup1.wait());
  EXPECT_EQ(dup1.finish, FinishReason::kLength);
}

INSTANTIATE_TEST_SUITE_P(InFlight, StepLoop, ::testing::Values(1, 2),
                         [](const auto& info) { return "plans" + std::to_string(info.param); });

}  // namespace
}  // namespace tessera::engine
