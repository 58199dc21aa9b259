// The request-shape limits every generation request meets, whichever front end it came through,
// and the hand-over of each prompt to the engine's per-sequence validation (see
// request_validation.h). Messages name the field as the client spelled it.
#include "tessera/server/request_validation.h"

#include "tessera/server/api_error.h"

namespace tessera::server {
namespace {

[[noreturn]] void refuse(std::string_view param, const std::string& message) {
  bad_request(std::string(param), message);
}

}  // namespace

void check_param_range(const NumberRange& r, double v, FieldNamer name) {
  try {
    engine::check_range(r, v, name);
  } catch (const engine::RequestError& e) {
    refuse(e.param(), e.what());
  }
}

int64_t request_token_cost(const ParsedGeneration& g) {
  int64_t cost = 0;
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    const int64_t max_tokens = i < g.max_tokens.size() ? g.max_tokens[i] : 0;
    cost += (int64_t(g.prompts[i].size()) + max_tokens) * g.n;
  }
  return cost;
}

std::vector<engine::ValidRequest> validate_generation(const ParsedGeneration& g,
                                                      const ParseContext& ctx, FieldNamer name) {
  const RequestLimits& lim = ctx.limits;
  const auto& sp = g.sampling;
  if (int(sp.logit_bias.size()) > lim.max_logit_bias) {
    refuse("logit_bias", name("logit_bias") + " has " + std::to_string(sp.logit_bias.size()) +
                             " entries; at most " + std::to_string(lim.max_logit_bias));
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
  // Every prompt against the model, before any is submitted: a request is refused whole.
  std::vector<engine::ValidRequest> out;
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    protocol::GenerationRequest req;
    req.prompt_ids = g.prompts[i];
    req.sampling = g.sampling;
    req.stopping = g.stopping;
    req.stopping.max_tokens = i < g.max_tokens.size() ? g.max_tokens[i] : 0;
    try {
      out.push_back(engine::validate_request(std::move(req), ctx.model, name, prompt_param));
    } catch (const engine::RequestError& e) {
      refuse(e.param(), e.what());
    }
  }
  const int64_t budget =
      lim.max_request_tokens > 0 ? lim.max_request_tokens : int64_t(ctx.model.max_model_len) * 16;
  if (const int64_t cost = request_token_cost(g); cost > budget) {
    refuse(g.n > 1 ? "n" : "max_tokens",
           "the request costs " + std::to_string(cost) + " tokens (prompt + " + name("max_tokens") +
               ", over " + std::to_string(sequences) + " sequences); at most " +
               std::to_string(budget) + " per request: lower " + name("max_tokens") + " or " +
               name("n") + ", or send fewer prompts");
  }
  return out;
}

}  // namespace tessera::server
