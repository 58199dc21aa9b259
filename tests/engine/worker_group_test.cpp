// The worker group on the default model with real processes over Gloo: TP=3, PP=2 and TP=3 x PP=2
// (and TP=3, PP=2, TP=3 x PP=2 on the guarded device, whose ranks keep weights, activations and KV
// cache in memory host code may not touch, and whose communicators move device tensors) give the
// same greedy tokens and logprobs as one in-process worker, fed the same tokens in lock
// step (teacher forcing, so a near-tie cannot make the runs diverge). A killed rank fails the step
// within seconds with an error naming it; a rank that fails to load names itself and the cause.
#include "tessera/engine/worker_group.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "engine_test_paths.h"
#include "tessera/core/error.h"

namespace tessera::engine {
namespace {

using testing::model_path;
using testing::small_worker;
using testing::tessera_bin;

WorkerGroupParams group(int T, int P, std::vector<int> split = {},
                        const std::string& backend = "cpu") {
  return {.executable = tessera_bin(),
          .worker = small_worker(),
          .tensor = T,
          .pipeline = P,
          .layer_split = std::move(split),
          .backend = backend,
          .threads_per_rank = 1,
          .start_timeout_seconds = 120,
          .step_timeout_seconds = 120,
          .collective_timeout_seconds = 10,
          .heartbeat_seconds = 0.5,
          .heartbeat_timeout_seconds = 5};
}

// Three greedy sequences with random prompts, a prefill step then `decodes` decode steps; both
// executors get the same plans, built from the reference's tokens.
void compare_lockstep(Executor& ref, Executor& group, uint64_t seed, int decodes) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> tok(100, 40000);
  const int nseq = 3;
  protocol::ExecutePlan plan;
  std::vector<int32_t> pos(nseq);
  for (int s = 0; s < nseq; ++s) {
    std::vector<int32_t> prompt(static_cast<size_t>(4 + 9 * s));
    for (auto& t : prompt) t = tok(rng);
    sampling::SamplingParams sp;
    sp.temperature = 0.0f;
    sp.logprobs = true;
    sp.top_logprobs = 2;
    plan.new_sequences.push_back({static_cast<uint64_t>(s + 1), sp, prompt});
    plan.chunks.push_back(
        {static_cast<uint64_t>(s + 1), prompt, 0, {3 * s, 3 * s + 1, 3 * s + 2}, true});
    pos[static_cast<size_t>(s)] = static_cast<int32_t>(prompt.size());
  }
  int compared = 0;
  for (int step = 0; step <= decodes; ++step) {
    const protocol::ExecuteResult a = ref.execute(plan);
    const protocol::ExecuteResult b = group.execute(plan);
    ASSERT_EQ(a.sampled.size(), static_cast<size_t>(nseq));
    ASSERT_EQ(b.sampled.size(), a.sampled.size());
    plan = {};
    for (size_t i = 0; i < a.sampled.size(); ++i) {
      const auto& x = a.sampled[i].result;
      const auto& y = b.sampled[i].result;
      ASSERT_EQ(x.top.size(), 2u);
      ASSERT_EQ(y.top.size(), 2u);
      // fp32 sums in another order: logprobs agree to ~1e-4; the greedy token must agree unless
      // the top two are closer than that.
      EXPECT_NEAR(x.logprob, y.logprob, 2e-3) << "step " << step << " seq " << i;
      if (x.top[0].logprob - x.top[1].logprob > 1e-2f) {
        EXPECT_EQ(x.token, y.token) << "step " << step << " seq " << i;
        ++compared;
      }
      plan.chunks.push_back({a.sampled[i].seq_id,
                             {x.token},
                             pos[i],
                             {3 * static_cast<int32_t>(i), 3 * static_cast<int32_t>(i) + 1,
                              3 * static_cast<int32_t>(i) + 2},
                             true});
      ++pos[i];
    }
  }
  EXPECT_GT(compared, nseq * (decodes + 1) / 2) << "too many near-ties to judge";
}

struct Layout {
  int T, P;
  std::vector<int> split;
  std::string backend = "cpu";
};

class WorkerGroupLayouts : public ::testing::TestWithParam<Layout> {};

TEST_P(WorkerGroupLayouts, MatchesOneWorker) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  const auto& L = GetParam();
  LocalExecutor local(small_worker());
  WorkerGroupExecutor g(group(L.T, L.P, L.split, L.backend));
  ASSERT_TRUE(g.alive());
  EXPECT_EQ(g.info().world_size, L.T * L.P);
  EXPECT_EQ(g.info().vocab_size, local.info().vocab_size);
  EXPECT_EQ(g.info().num_blocks, 64);
  // Each rank holds about 1/(T*P) of the layer weights (the vocabulary shards ride on top).
  size_t total = 0;
  for (const auto& r : g.ranks()) total += r.hello.weight_bytes;
  for (const auto& r : g.ranks())
    EXPECT_LT(r.hello.weight_bytes, total / g.ranks().size() * 2) << "rank " << r.rank;
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  compare_lockstep(local, g, seed, 4);
}

INSTANTIATE_TEST_SUITE_P(DefaultModel, WorkerGroupLayouts,
                         ::testing::Values(Layout{3, 1, {}}, Layout{1, 2, {}}, Layout{3, 2, {}},
                                           Layout{1, 3, {4, 20, 6}}, Layout{3, 1, {}, "guarded"},
                                           Layout{1, 2, {}, "guarded"},
                                           Layout{3, 2, {}, "guarded"}),
                         [](const auto& info) {
                           return "T" + std::to_string(info.param.T) + "xP" +
                                  std::to_string(info.param.P) +
                                  (info.param.split.empty() ? "" : "_uneven") +
                                  (info.param.backend == "cpu" ? "" : "_" + info.param.backend);
                         });

TEST(WorkerGroup, KilledRankFailsTheStepWithinSeconds) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  WorkerGroupExecutor g(group(3, 1));
  LocalExecutor local(small_worker());
  compare_lockstep(local, g, 7, 0);  // it works ...
  const pid_t victim = g.ranks()[2].pid;
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);  // ... until rank 2 dies
  protocol::ExecutePlan plan;
  sampling::SamplingParams sp;
  sp.temperature = 0.0f;
  plan.new_sequences.push_back({99, sp, {1, 2, 3}});
  plan.chunks.push_back({99, {1, 2, 3}, 0, {40}, true});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    g.execute(plan);
    FAIL() << "a step with a dead rank succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  EXPECT_FALSE(g.alive());
  EXPECT_THROW(g.execute(plan), Error);
}

TEST(WorkerGroup, StoppedRankIsDetectedByItsMissingHeartbeat) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  WorkerGroupExecutor g(group(1, 2));
  const pid_t victim = g.ranks()[1].pid;
  ::kill(victim, SIGSTOP);  // hung: alive but silent
  protocol::ExecutePlan plan;
  sampling::SamplingParams sp;
  sp.temperature = 0.0f;
  plan.new_sequences.push_back({5, sp, {1, 2, 3}});
  plan.chunks.push_back({5, {1, 2, 3}, 0, {0}, true});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    g.execute(plan);
    FAIL() << "a step with a stopped rank succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("heartbeat"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_FALSE(g.alive());
}

TEST(WorkerGroup, InvalidLayoutNamesTheRankAndTheReason) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  try {
    WorkerGroupExecutor g(group(2, 1));  // 9 heads do not split in two
    FAIL() << "TP=2 accepted for 9 heads";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank "), std::string::npos) << m;
    EXPECT_NE(m.find("valid: 1, 3, 9"), std::string::npos) << m;
  }
}

TEST(WorkerGroup, StepErrorsKeepTheGroupServing) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  WorkerGroupExecutor g(group(3, 1));
  protocol::ExecutePlan bad;
  bad.chunks.push_back({1, {1, 2}, 0, {9999}, false});  // a block outside every rank's pool
  EXPECT_THROW(g.execute(bad), Error);
  EXPECT_TRUE(g.alive());
  LocalExecutor local(small_worker());
  compare_lockstep(local, g, 11, 1);
}

}  // namespace
}  // namespace tessera::engine
