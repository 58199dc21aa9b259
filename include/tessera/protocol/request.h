// Plain structs that cross module boundaries between the front end, the engine, the scheduler
// and the executor: what a generation request asks for and what comes back. Value types only;
// whoever holds one owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/sampling/sampler.h"

namespace tessera::protocol {

using Clock = std::chrono::steady_clock;

struct StoppingParams {
  int max_tokens = 16;
  std::vector<std::string> stop;         // stop strings, matched on detokenized text
  std::vector<int32_t> stop_token_ids;   // besides the model's EOS / end-of-turn tokens
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
};

struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  sampling::SamplingParams sampling;
  StoppingParams stopping;
  int priority = 0;  // lower runs first (vLLM convention); FCFS within a priority
  std::optional<Clock::time_point> deadline;
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

// One update for one request, emitted by the engine after a step (or on finish/error).
struct RequestOutput {
  std::string request_id;
  std::vector<int32_t> new_token_ids;
  std::string new_text;                          // detokenized delta (never half a UTF-8 char)
  std::vector<sampling::SampleResult> logprobs;  // per new token, when requested
  FinishReason finish = FinishReason::kNone;
  std::optional<std::string> matched_stop;       // the stop string that ended it
  std::string error;                             // for kError: what went wrong
  int prompt_tokens = 0;
  int completion_tokens = 0;                     // cumulative
  int cached_tokens = 0;  // prompt tokens found in the prefix cache (not computed again)
  bool finished() const { return finish != FinishReason::kNone; }
};

}  // namespace tessera::protocol
