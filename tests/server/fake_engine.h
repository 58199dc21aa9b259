// A scripted EngineInterface for the HTTP server tests: a real byte-level Tokenizer over a tiny
// hand-made vocabulary (with ChatML tokens and template), and a step thread that emits one token
// of a fixed text per running request per step, with configurable delays, finishes, failures.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/engine/engine.h"

namespace tessera::server::testing {

struct FakeEngineOptions {
  int step_ms = 1;
  std::string script = "hello world ";    // what the fake model says, over and over
  std::optional<ErrorCode> submit_error;  // submit() throws this
  int error_after = -1;                   // finish kError after this many tokens
  int eos_after = -1;                     // finish kStop after this many tokens
  int max_model_len = 512;
  bool hold = false;  // emit nothing until release()
  int tokens_per_step = 1;
  std::string chat_template;  // empty: the small ChatML template
};

tokenizer::Tokenizer make_test_tokenizer(const std::string& chat_template = "");

class FakeEngine : public engine::EngineInterface {
 public:
  explicit FakeEngine(FakeEngineOptions opt = {});
  ~FakeEngine() override;

  void submit(engine::ValidRequest req, OutputCallback cb) override;
  void abort(const std::string& request_id) override;
  const tokenizer::Tokenizer& tokenizer() const override { return tok_; }
  const engine::ModelInfo& model_info() const override { return info_; }
  const engine::EngineLimits& limits() const override { return limits_; }
  MetricsRegistry& metrics() override { return metrics_; }
  bool ready() const override { return ready_; }
  bool healthy() const override { return healthy_; }
  void shutdown(double) override;

  // Test controls and observations.
  std::atomic<bool> ready_{true}, healthy_{true};
  void release();
  std::vector<protocol::GenerationRequest> submitted() const;
  std::vector<std::string> aborted() const;
  // Waits until `pred(submitted count, aborted count)` holds, up to `ms`.
  bool wait_for(const std::function<bool(size_t, size_t)>& pred, int ms = 5000) const;
  size_t running() const;
  const std::vector<int32_t>& script_ids() const { return script_ids_; }
  // The text a request with `max_tokens` and no stop produces.
  std::string expected_text(int max_tokens) const;

 private:
  struct Running {
    protocol::GenerationRequest req;
    OutputCallback cb;
    int emitted = 0;
    std::string text;
    bool abort = false;
  };
  void loop();
  void emit(Running& r, protocol::RequestOutput& o) const;  // one token into `o`

  FakeEngineOptions opt_;
  tokenizer::Tokenizer tok_;
  std::vector<int32_t> script_ids_;
  engine::ModelInfo info_;
  engine::EngineLimits limits_;
  MetricsRegistry metrics_;
  // Recursive so that a wait_for() predicate may call the other observers (running(), ...).
  mutable std::recursive_mutex mu_;
  mutable std::condition_variable_any cv_;
  std::map<std::string, Running> running_;
  std::vector<protocol::GenerationRequest> submitted_;
  std::vector<std::string> aborted_;
  bool stop_ = false;
  bool held_;
  std::thread thread_;
};

}  // namespace tessera::server::testing
