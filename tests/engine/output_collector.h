// Collects one request's outputs from an engine callback; wait() returns when it has finished
// (false when it did not within the timeout). Shared by the engine tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/engine.h"

namespace tessera::engine::testing {

struct OutputCollector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::string text;
  int completion_tokens = 0;
  protocol::FinishReason finish = protocol::FinishReason::kNone;
  std::string error;
  std::optional<std::string> matched;

  EngineInterface::OutputCallback callback() {
    return [this](const protocol::RequestOutput& o) {
      std::lock_guard lock(mu);
      tokens.insert(tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      text += o.new_text;
      completion_tokens = o.completion_tokens;
      if (o.finished()) {
        finish = o.finish;
        error = o.error;
        matched = o.matched_stop;
        cv.notify_all();
      }
    };
  }
  [[nodiscard]] bool wait(std::chrono::seconds timeout = std::chrono::seconds(300)) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return finish != protocol::FinishReason::kNone; });
  }
};

}  // namespace tessera::engine::testing
