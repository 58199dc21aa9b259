// Executors on the default model: a worker in a child process (`tessera worker`) samples the same
// greedy tokens as one in-process, reports step errors without dying, and a killed child turns
// into a clear error and alive() == false. The process tests need the tessera binary: env
// TESSERA_BIN, else <build>/tessera; they skip when neither exists.
#include "tessera/engine/executor.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "engine_test_paths.h"
#include "tessera/core/error.h"

namespace tessera::engine {
namespace {

using testing::model_path;
using testing::small_worker;
using testing::tessera_bin;

ProcessExecutorParams process_params() {
  return {.executable = tessera_bin(),
          .worker = small_worker(),
          .start_timeout_seconds = 60,
          .step_timeout_seconds = 30,
          .shutdown_grace_seconds = 2};
}

// Two greedy sequences with random prompts: one prefill plan, then `decodes` decode plans that
// feed back whatever was sampled. Returns the sampled tokens in order.
std::vector<int32_t> run_greedy(Executor& ex, uint64_t seed, int decodes) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> tok(100, 20000);
  const int nseq = 2;
  std::vector<std::vector<int32_t>> prompts(nseq);
  protocol::ExecutePlan plan;
  for (int s = 0; s < nseq; ++s) {
    prompts[s].resize(static_cast<size_t>(5 + 7 * s));
    for (auto& t : prompts[s]) t = tok(rng);
    sampling::SamplingParams sp;
    sp.temperature = 0.0f;
    sp.logprobs = true;
    sp.top_logprobs = 3;
    plan.new_sequences.push_back({static_cast<uint64_t>(s + 1), sp, prompts[s]});
    // Blocks 0-1 for sequence 1, 2-3 for sequence 2: enough for prompt + decodes.
    plan.chunks.push_back({static_cast<uint64_t>(s + 1), prompts[s], 0, {2 * s, 2 * s + 1}, true});
  }
  std::vector<int32_t> out;
  std::vector<int32_t> pos = {static_cast<int32_t>(prompts[0].size()),
                              static_cast<int32_t>(prompts[1].size())};
  for (int step = 0; step <= decodes; ++step) {
    const protocol::ExecuteResult r = ex.execute(plan);
    EXPECT_EQ(r.sampled.size(), static_cast<size_t>(nseq));
    plan = {};
    for (size_t i = 0; i < r.sampled.size(); ++i) {
      out.push_back(r.sampled[i].result.token);
      EXPECT_EQ(r.sampled[i].result.top.size(), 3u);
      plan.chunks.push_back({r.sampled[i].seq_id,
                             {r.sampled[i].result.token},
                             pos[i],
                             {2 * static_cast<int32_t>(i), 2 * static_cast<int32_t>(i) + 1},
                             true});
      ++pos[i];
    }
  }
  return out;
}

TEST(ProcessExecutor, MatchesLocalExecutorOnGreedyPlans) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  LocalExecutor local(small_worker());
  ProcessExecutor remote(process_params());
  EXPECT_TRUE(remote.alive());
  EXPECT_EQ(remote.info().vocab_size, local.info().vocab_size);
  EXPECT_EQ(remote.info().max_position, local.info().max_position);
  EXPECT_EQ(remote.info().num_layers, local.info().num_layers);
  EXPECT_EQ(remote.info().num_blocks, 64);
  EXPECT_EQ(remote.info().block_size, 16);
  const uint64_t seed = std::random_device{}();
  const auto a = run_greedy(local, seed, 4);
  const auto b = run_greedy(remote, seed, 4);
  EXPECT_EQ(a, b) << "seed " << seed;
  EXPECT_EQ(a.size(), 10u);
}

TEST(ProcessExecutor, StepErrorKeepsWorkerServing) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  ProcessExecutor remote(process_params());
  protocol::ExecutePlan bad;
  bad.chunks.push_back({7, {1, 2, 3}, 0, {9999}, false});  // block outside the pool
  try {
    remote.execute(bad);
    FAIL() << "bad plan accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside the KV pool"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(remote.alive());
  EXPECT_EQ(run_greedy(remote, 1, 1).size(), 4u);
}

TEST(ProcessExecutor, KilledChildFailsTheNextStep) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  ProcessExecutor remote(process_params());
  ASSERT_EQ(::kill(remote.pid(), SIGKILL), 0);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    run_greedy(remote, 2, 1);
    FAIL() << "step on a dead worker succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("worker process " + std::to_string(remote.pid())), std::string::npos) << msg;
    EXPECT_NE(msg.find("signal 9"), std::string::npos) << msg;
    std::printf("killed-child error: %s\n", msg.c_str());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_FALSE(remote.alive());
  EXPECT_THROW(remote.execute({}), Error);
}

TEST(ProcessExecutor, HungChildTimesOut) {
  SKIP_WITHOUT_MODEL_OR_BIN();
  auto p = process_params();
  p.step_timeout_seconds = 0.5;
  p.shutdown_grace_seconds = 0.2;
  ProcessExecutor remote(p);
  ASSERT_EQ(::kill(remote.pid(), SIGSTOP), 0);  // alive but never answers
  const auto t0 = std::chrono::steady_clock::now();
  try {
    run_greedy(remote, 3, 0);
    FAIL() << "step on a hung worker succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_FALSE(remote.alive());
}

TEST(ProcessExecutor, LoadFailureNamesTheModelAndTheCause) {
  if (tessera_bin().empty()) GTEST_SKIP() << "TESSERA_BIN unset and no build/tessera";
  auto p = process_params();
  p.worker.model_path = "/nonexistent/model-" + std::to_string(std::random_device{}()) + ".gguf";
  try {
    ProcessExecutor remote(p);
    FAIL() << "worker loaded a missing model";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.worker.model_path), std::string::npos) << msg;
    EXPECT_NE(msg.find("failed to load"), std::string::npos) << msg;
    std::printf("load-failure error: %s\n", msg.c_str());
  }
}

TEST(ProcessExecutor, MissingExecutableIsAnError) {
  auto p = process_params();
  p.executable = "/nonexistent/tessera-" + std::to_string(std::random_device{}());
  EXPECT_THROW(ProcessExecutor remote(p), Error);
}

}  // namespace
}  // namespace tessera::engine
