// The limits every generation request meets, whichever front end it came through (see
// request_validation.h). Messages name the field as the client spelled it.
#include "tessera/server/request_validation.h"

#include <cmath>
#include <cstdio>

#include "tessera/server/api_error.h"

namespace tessera::server {
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
  bad_request(std::string(param), message);
}

}  // namespace

std::string openai_field(std::string_view param) { return std::string(param); }

void check_range(const NumberRange& r, double v, FieldNamer name) {
  const bool low_ok = r.lo_open ? v > r.lo : v >= r.lo;
  if (std::isfinite(v) && low_ok && v <= r.hi) return;
  refuse(r.param, name(r.param) + " = " + num(v) + " is out of range: must be in " +
                      (r.lo_open ? "(" : "[") + num(r.lo) + ", " + num(r.hi) + "]");
}

int64_t request_token_cost(const ParsedGeneration& g) {
  int64_t cost = 0;
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    const int64_t max_tokens = i < g.max_tokens.size() ? g.max_tokens[i] : 0;
    cost += (int64_t(g.prompts[i].size()) + max_tokens) * g.n;
  }
  return cost;
}

void validate_generation(const ParsedGeneration& g, const ParseContext& ctx, FieldNamer name) {
  const RequestLimits& lim = ctx.limits;
  const int vocab = ctx.tok.vocab_size();
  const auto& sp = g.sampling;
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
  if (int(sp.logit_bias.size()) > lim.max_logit_bias) {
    refuse("logit_bias", name("logit_bias") + " has " + std::to_string(sp.logit_bias.size()) +
                             " entries; at most " + std::to_string(lim.max_logit_bias));
  }
  for (const auto& [token, bias] : sp.logit_bias) {
    if (token < 0 || token >= vocab) {
      refuse("logit_bias", name("logit_bias") + " token " + std::to_string(token) +
                               " is outside the vocabulary of " + std::to_string(vocab));
    }
    check_range(kLogitBias, bias, name);
  }
  if (g.n < 1 || g.n > lim.max_n) {
    refuse("n", name("n") + " = " + std::to_string(g.n) + " is out of range: must be in [1, " +
                    std::to_string(lim.max_n) + "]");
  }
  if (g.top_logprobs < 0 || g.top_logprobs > lim.max_logprobs) {
    refuse("top_logprobs", name("top_logprobs") + " = " + std::to_string(g.top_logprobs) +
                               " is out of range: must be in [0, " +
                               std::to_string(lim.max_logprobs) + "]");
  }

  const auto& st = g.stopping;
  if (int(st.stop.size()) > lim.max_stop) {
    refuse("stop", name("stop") + " has " + std::to_string(st.stop.size()) + " strings; at most " +
                       std::to_string(lim.max_stop));
  }
  for (size_t i = 0; i < st.stop.size(); ++i) {
    const std::string field = name("stop") + "[" + std::to_string(i) + "]";
    if (st.stop[i].empty()) refuse("stop", field + " must not be empty");
    if (int(st.stop[i].size()) > lim.max_stop_bytes) {
      refuse("stop", field + " is " + std::to_string(st.stop[i].size()) + " bytes; at most " +
                         std::to_string(lim.max_stop_bytes));
    }
  }
  for (size_t i = 0; i < st.stop_token_ids.size(); ++i) {
    const int32_t id = st.stop_token_ids[i];
    if (id < 0 || id >= vocab) {
      refuse("stop_token_ids", "token id " + std::to_string(id) + " in " + name("stop_token_ids") +
                                   " is outside the vocabulary of " + std::to_string(vocab));
    }
  }

  const char* prompt_param = g.chat ? "messages" : "prompt";
  if (g.prompts.empty()) refuse(prompt_param, name(prompt_param) + ": the prompt is empty");
  if (int(g.prompts.size()) > lim.max_prompts) {
    refuse(prompt_param, name(prompt_param) + " has " + std::to_string(g.prompts.size()) +
                             " prompts; at most " + std::to_string(lim.max_prompts));
  }
  const int64_t sequences = int64_t(g.prompts.size()) * g.n;
  if (sequences > lim.max_sequences) {
    refuse("n", std::to_string(g.prompts.size()) + " prompts x " + name("n") + " = " +
                    std::to_string(g.n) + " makes " + std::to_string(sequences) +
                    " sequences; at most " + std::to_string(lim.max_sequences) + " per request");
  }
  const int ctx_len = ctx.max_model_len;
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    const int len = int(g.prompts[i].size());
    if (len == 0) refuse(prompt_param, name(prompt_param) + ": the prompt is empty");
    for (int32_t id : g.prompts[i]) {
      if (id < 0 || id >= vocab) {
        refuse(prompt_param, name(prompt_param) + ": token id " + std::to_string(id) +
                                 " is outside the vocabulary of " + std::to_string(vocab));
      }
    }
    if (len >= ctx_len) {
      refuse(prompt_param, name(prompt_param) + ": the prompt has " + std::to_string(len) +
                               " tokens; the model's context is " + std::to_string(ctx_len));
    }
    const int max_tokens = i < g.max_tokens.size() ? g.max_tokens[i] : 0;
    if (max_tokens < 1 || max_tokens > ctx_len) {
      refuse("max_tokens", name("max_tokens") + " = " + std::to_string(max_tokens) +
                               " is out of range: must be in [1, " + std::to_string(ctx_len) + "]");
    }
    if (int64_t(len) + max_tokens > ctx_len) {
      refuse("max_tokens", "the prompt (" + std::to_string(len) + " tokens) plus " +
                               name("max_tokens") + " (" + std::to_string(max_tokens) +
                               ") exceeds the context of " + std::to_string(ctx_len) + " tokens");
    }
  }
  const int64_t budget =
      lim.max_request_tokens > 0 ? lim.max_request_tokens : int64_t(ctx_len) * 16;
  if (const int64_t cost = request_token_cost(g); cost > budget) {
    refuse(g.n > 1 ? "n" : "max_tokens",
           "the request costs " + std::to_string(cost) + " tokens (prompt + " + name("max_tokens") +
               ", over " + std::to_string(sequences) + " sequences); at most " +
               std::to_string(budget) + " per request: lower " + name("max_tokens") + " or " +
               name("n") + ", or send fewer prompts");
  }
}

}  // namespace tessera::server
