// The one per-sequence validation of a generation request (see request_check.h). Messages name
// the field as the front end spells it, and keep the numbers a client needs to fix the request.
#include "tessera/engine/request_check.h"

#include <cmath>
#include <cstdio>

#include "tessera/grammar/grammar.h"

namespace tessera::engine {
namespace {

// Shortest round-trip form of a number, as JSON would print it ("2", "0.5", "1e+30", "inf").
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(int64_t(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

[[noreturn]] void refuse(std::string_view param, const std::string& message) {
  throw RequestError(std::string(param), message);
}

void check_sampling(const sampling::SamplingParams& sp, int vocab, FieldNamer name) {
  using namespace ranges;
  check_range(kTemperature, sp.temperature, name);
  check_range(kTopP, sp.top_p, name);
  check_range(kMinP, sp.min_p, name);
  check_range(kPresencePenalty, sp.presence_penalty, name);
  check_range(kFrequencyPenalty, sp.frequency_penalty, name);
  check_range(kRepetitionPenalty, sp.repetition_penalty, name);
  if (sp.top_k < -1) {
    refuse("top_k", name("top_k") + " = " + std::to_string(sp.top_k) +
                        " is out of range: must be in [-1, 2147483647]");
  }
  if (sp.top_logprobs < 0 || sp.top_logprobs > kMaxTopLogprobs) {
    refuse("top_logprobs", name("top_logprobs") + " = " + std::to_string(sp.top_logprobs) +
                               " is out of range: must be in [0, " +
                               std::to_string(kMaxTopLogprobs) + "]");
  }
  for (const auto& [token, bias] : sp.logit_bias) {
    if (token < 0 || token >= vocab) {
      refuse("logit_bias", name("logit_bias") + " token " + std::to_string(token) +
                               " is outside the vocabulary of " + std::to_string(vocab));
    }
    check_range(kLogitBias, bias, name);
  }
  if (!sp.grammar.empty()) {
    try {
      (void)grammar::Grammar::parse(sp.grammar);
    } catch (const Error& e) {
      refuse("grammar", name("grammar") + ": " + e.what());
    }
  }
}

}  // namespace

std::string openai_field(std::string_view param) { return std::string(param); }

void check_range(const NumberRange& r, double v, FieldNamer name) {
  const bool low_ok = r.lo_open ? v > r.lo : v >= r.lo;
  if (std::isfinite(v) && low_ok && v <= r.hi) return;
  refuse(r.param, name(r.param) + " = " + num(v) + " is out of range: must be in " +
                      (r.lo_open ? "(" : "[") + num(r.lo) + ", " + num(r.hi) + "]");
}

ValidRequest ValidRequest::choice(std::string request_id, uint64_t k) const {
  ValidRequest v = *this;
  v.req_.request_id = std::move(request_id);
  if (v.req_.sampling.seed) *v.req_.sampling.seed += k;
  return v;
}

ValidRequest validate_request(protocol::GenerationRequest req, const ModelInfo& model,
                              FieldNamer name, std::string_view prompt_param) {
  TESSERA_CHECK(model.block_size > 0 && model.num_blocks > 0, "validate_request: no KV cache");
  const int vocab = model.vocab_size, ctx_len = model.max_model_len;
  check_sampling(req.sampling, vocab, name);
  const auto& st = req.stopping;
  for (const int32_t id : st.stop_token_ids) {
    if (id < 0 || id >= vocab) {
      refuse("stop_token_ids", "token id " + std::to_string(id) + " in " + name("stop_token_ids") +
                                   " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
  const int len = int(req.prompt_ids.size());
  if (len == 0) refuse(prompt_param, name(prompt_param) + ": the prompt is empty");
  for (const int32_t id : req.prompt_ids) {
    if (id < 0 || id >= vocab) {
      refuse(prompt_param, name(prompt_param) + ": token id " + std::to_string(id) +
                               " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
  if (len >= ctx_len) {
    refuse(prompt_param, name(prompt_param) + ": the prompt has " + std::to_string(len) +
                             " tokens; the model's context is " + std::to_string(ctx_len));
  }
  const int max_tokens = st.max_tokens;
  if (max_tokens < 1 || max_tokens > ctx_len) {
    refuse("max_tokens", name("max_tokens") + " = " + std::to_string(max_tokens) +
                             " is out of range: must be in [1, " + std::to_string(ctx_len) + "]");
  }
  const int64_t need = int64_t(len) + max_tokens;
  if (need > ctx_len) {
    refuse("max_tokens", "the prompt (" + std::to_string(len) + " tokens) plus " +
                             name("max_tokens") + " (" + std::to_string(max_tokens) +
                             ") exceeds the context of " + std::to_string(ctx_len) + " tokens");
  }
  // The whole sequence must fit the KV cache at once, or it could never finish.
  const int64_t blocks = (need + model.block_size - 1) / model.block_size;
  if (blocks > model.num_blocks) {
    refuse("max_tokens", "the prompt (" + std::to_string(len) + " tokens) plus " +
                             name("max_tokens") + " (" + std::to_string(max_tokens) + ") need " +
                             std::to_string(blocks) + " KV blocks but the cache holds " +
                             std::to_string(model.num_blocks) + " (" +
                             std::to_string(int64_t(model.num_blocks) * model.block_size) +
                             " tokens)");
  }
  return ValidRequest(std::move(req));
}

}  // namespace tessera::engine
