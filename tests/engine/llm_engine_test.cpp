// The engine on the default model: concurrent requests, batch invariance of greedy outputs,
// stop strings, aborts, deadlines and bad requests failing alone.
#include "tessera/engine/llm_engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "output_collector.h"
#include "tessera/core/error.h"

namespace tessera::engine {
namespace {

std::string model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

using Collector = testing::OutputCollector;

class Engine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(model_path())) return;
    engine_ = new LlmEngine({.model_path = model_path(),
                             .served_model_name = "smol",
                             .limits = {.max_num_seqs = 64, .max_num_batched_tokens = 512},
                             .kv_cache_bytes = size_t{96} << 20});
    engine_->start();
  }
  static void TearDownTestSuite() { delete engine_; }
  void SetUp() override {
    if (!engine_) GTEST_SKIP() << "default model not downloaded";
  }
  protocol::GenerationRequest request(const std::string& id, const std::string& text,
                                      int max_tokens) {
    protocol::GenerationRequest r;
    r.request_id = id;
    r.prompt_ids = engine_->tokenizer().encode(text);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = max_tokens;
    r.stopping.ignore_eos = true;
    return r;
  }
  static LlmEngine* engine_;
};
LlmEngine* Engine::engine_ = nullptr;

TEST_F(Engine, GreedyOutputDoesNotDependOnTheBatch) {
  Collector alone;
  engine_->submit(engine_->validate(request("alone", "The history of the Roman empire", 12)), alone.callback());
  ASSERT_TRUE(alone.wait());
  ASSERT_EQ(alone.tokens.size(), 12u);

  std::vector<std::unique_ptr<Collector>> others;
  Collector again;
  for (int i = 0; i < 63; ++i) {
    others.push_back(std::make_unique<Collector>());
    engine_->submit(engine_->validate(request("other" + std::to_string(i),
                            "Request number " + std::to_string(i) + " asks about", 4 + i % 9)),
                    others.back()->callback());
    if (i == 20)
      engine_->submit(engine_->validate(request("again", "The history of the Roman empire", 12)), again.callback());
  }
  ASSERT_TRUE(again.wait());
  for (auto& c : others) ASSERT_TRUE(c->wait());
  EXPECT_EQ(again.tokens, alone.tokens);
  EXPECT_EQ(again.text, alone.text);
  for (auto& c : others) EXPECT_EQ(c->finish, protocol::FinishReason::kLength);
}

TEST_F(Engine, StopStringEndsTheRequestAndIsNotSent) {
  Collector full;
  engine_->submit(engine_->validate(request("full", "Count: 1, 2, 3,", 12)), full.callback());
  ASSERT_TRUE(full.wait());
  ASSERT_GE(full.text.size(), 4u);
  // Stop at a piece of the text we know comes.
  const std::string stop = full.text.substr(2, 2);
  Collector c;
  auto r = request("stopped", "Count: 1, 2, 3,", 12);
  r.stopping.stop = {stop};
  engine_->submit(engine_->validate(r), c.callback());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.finish, protocol::FinishReason::kStop);
  EXPECT_EQ(c.matched, stop);
  EXPECT_EQ(c.text, full.text.substr(0, full.text.find(stop)));
}

TEST_F(Engine, AbortAndDeadlineStopRequests) {
  Collector a;
  engine_->submit(engine_->validate(request("to-abort", "Write a very long story", 2000)), a.callback());
  engine_->abort("to-abort");
  ASSERT_TRUE(a.wait());
  EXPECT_EQ(a.finish, protocol::FinishReason::kAbort);
  Collector d;
  auto r = request("deadline", "Write a very long story", 2000);
  r.deadline = protocol::Clock::now() + std::chrono::milliseconds(300);
  engine_->submit(engine_->validate(r), d.callback());
  ASSERT_TRUE(d.wait());
  EXPECT_EQ(d.finish, protocol::FinishReason::kError);
  EXPECT_NE(d.error.find("deadline"), std::string::npos);
}

TEST_F(Engine, RepeatedLongPromptHitsThePrefixCache) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  const double before = engine_->metrics().value("tessera:prefix_cache_hits_total");
  for (int k = 0; k < 2; ++k) {
    Collector c;
    engine_->submit(engine_->validate(request("prefix" + std::to_string(k), text, 2)), c.callback());
    ASSERT_TRUE(c.wait());
    ASSERT_EQ(c.tokens.size(), 2u);
  }
  // Let the loop export its counters (it does so after every iteration).
  for (int i = 0; i < 50 && engine_->metrics().value("tessera:prefix_cache_hits_total") <= before;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(engine_->metrics().value("tessera:prefix_cache_hits_total") - before, 16.0 * 10);
}

TEST_F(Engine, BadRequestsAreRefusedWithClearErrors) {
  Collector c;
  auto too_long = request("long", "hi", 100000);
  try {
    engine_->submit(engine_->validate(too_long), c.callback());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("100000"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("8192"), std::string::npos);
  }
  auto bad_token = request("bad", "hi", 4);
  bad_token.prompt_ids.push_back(49152);
  EXPECT_THROW(engine_->submit(engine_->validate(bad_token), c.callback()), Error);
  auto bad_param = request("badp", "hi", 4);
  bad_param.sampling.top_p = 2.0f;
  EXPECT_THROW(engine_->submit(engine_->validate(bad_param), c.callback()), Error);
  // The engine still serves.
  Collector ok;
  engine_->submit(engine_->validate(request("ok", "hello", 3)), ok.callback());
  ASSERT_TRUE(ok.wait());
  EXPECT_EQ(ok.tokens.size(), 3u);
  EXPECT_TRUE(engine_->healthy());
  EXPECT_TRUE(engine_->ready());
  EXPECT_GT(engine_->metrics().value("tessera:generation_tokens_total"), 0.0);
}

}  // namespace
}  // namespace tessera::engine
