// The one validation of a generation request against the served model. Every per-sequence limit
// (prompt token ids, max_tokens against the context and the KV cache, the sampling ranges,
// logit_bias and stop_token_ids) is checked here once and yields a ValidRequest: the engine
// admits only ValidRequests, and the scheduler and the sampler trust what one holds. Front ends
// call validate_request for every sequence of a request before submitting any (so a request is
// refused whole), with their own spelling of field names; request-shape limits of a front end
// (how many prompts, n, stop-string sizes, the cost budget) stay there. Pure functions; no state.
#pragma once

#include <string>
#include <string_view>

#include "tessera/core/error.h"
#include "tessera/protocol/request.h"

namespace tessera::engine {

struct ModelInfo {
  std::string id;  // served model name, e.g. "smollm2-135m-instruct"
  std::string path;
  int max_model_len = 0;  // context length
  int vocab_size = 0;
  int num_blocks = 0;
  int block_size = 0;
};

// A numeric request parameter's valid range, named by its OpenAI spelling.
struct NumberRange {
  std::string_view param;
  double lo;
  double hi;
  bool lo_open = false;  // (lo, hi] instead of [lo, hi]
};

namespace ranges {
inline constexpr NumberRange kTemperature{"temperature", 0.0, 2.0};
inline constexpr NumberRange kTopP{"top_p", 0.0, 1.0, true};
inline constexpr NumberRange kMinP{"min_p", 0.0, 1.0};
inline constexpr NumberRange kPresencePenalty{"presence_penalty", -2.0, 2.0};
inline constexpr NumberRange kFrequencyPenalty{"frequency_penalty", -2.0, 2.0};
inline constexpr NumberRange kRepetitionPenalty{"repetition_penalty", 0.0, 10.0, true};
inline constexpr NumberRange kLogitBias{"logit_bias", -100.0, 100.0};
inline constexpr int kMaxTopLogprobs = sampling::kMaxTopLogprobs;
}  // namespace ranges

// How a front end spells a parameter in its messages: HTTP uses the OpenAI name as is, gRPC its
// field path ("temperature" -> "sampling.temperature").
using FieldNamer = std::string (*)(std::string_view param);
std::string openai_field(std::string_view param);

// A refused request: kInvalidArgument, with the OpenAI name of the parameter at fault (or "") so
// that front ends can answer 400 with `param`; the message starts with the front end's spelling.
class RequestError : public Error {
 public:
  RequestError(std::string param, const std::string& message)
      : Error(ErrorCode::kInvalidArgument, message), param_(std::move(param)) {}
  const std::string& param() const { return param_; }

 private:
  std::string param_;
};

// Throws RequestError("<field> = <v> is out of range: must be in [lo, hi]", param).
void check_range(const NumberRange& r, double v, FieldNamer name = openai_field);

class ValidRequest {
 public:
  const protocol::GenerationRequest& get() const { return req_; }
  const protocol::GenerationRequest* operator->() const { return &req_; }
  protocol::GenerationRequest take() && { return std::move(req_); }
  // Fields no limit depends on, set by the front end after validation.
  void set_request_id(std::string id) { req_.request_id = std::move(id); }
  void set_deadline(protocol::Clock::time_point t) { req_.deadline = t; }
  void set_priority(int priority) { req_.priority = priority; }
  // The same request as choice k of its prompt: its own id, and its seed (if any) offset by k so
  // that choices differ yet stay reproducible. Nothing validated changes.
  ValidRequest choice(std::string request_id, uint64_t k) const;

 private:
  friend ValidRequest validate_request(protocol::GenerationRequest, const ModelInfo&, FieldNamer,
                                       std::string_view);
  explicit ValidRequest(protocol::GenerationRequest r) : req_(std::move(r)) {}
  protocol::GenerationRequest req_;
};

// Every per-sequence limit against `model` (see the top of this file). Throws RequestError.
// `prompt_param` names the prompt in messages: "prompt", or "messages" for a chat request.
ValidRequest validate_request(protocol::GenerationRequest req, const ModelInfo& model,
                              FieldNamer name = openai_field,
                              std::string_view prompt_param = "prompt");

}  // namespace tessera::engine
