// OpenAI request bodies -> ParsedGeneration. Every check names its parameter so a client sees
// which field was wrong; null values count as absent, as in OpenAI's API.
#include "tessera/server/openai_request.h"

#include <cmath>
#include <limits>

#include "tessera/server/api_error.h"

namespace tessera::server {
namespace {

using json = nlohmann::ordered_json;

const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> number(const json& body, const char* key, double lo, double hi,
                             bool lo_open = false) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(key, std::string(key) + " must be a number");
  const double x = v->get<double>();
  const bool low_ok = lo_open ? x > lo : x >= lo;
  if (!std::isfinite(x) || !low_ok || x > hi) {
    bad_request(key, std::string(key) + " = " + v->dump() + " is out of range: must be in " +
                         (lo_open ? "(" : "[") + json(lo).dump() + ", " + json(hi).dump() + "]");
  }
  return x;
}

std::optional<int64_t> integer(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad_request(key, std::string(key) + " must be an integer");
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : v->get<int64_t>();
  if (x < lo || x > hi) {
    bad_request(key, std::string(key) + " = " + v->dump() + " is out of range: must be in [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

std::optional<bool> boolean(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_request(key, std::string(key) + " must be a boolean");
  return v->get<bool>();
}

std::optional<std::string> string(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad_request(key, std::string(key) + " must be a string");
  return v->get<std::string>();
}

void parse_stop(const json& body, const ParseContext& ctx, protocol::StoppingParams& st) {
  if (const json* v = field(body, "stop")) {
    if (v->is_string()) {
      st.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const auto& s : *v) {
        if (!s.is_string()) bad_request("stop", "stop must be a string or a list of strings");
        st.stop.push_back(s.get<std::string>());
      }
    } else {
      bad_request("stop", "stop must be a string or a list of strings");
    }
    if (int(st.stop.size()) > ctx.max_stop) {
      bad_request("stop", "at most " + std::to_string(ctx.max_stop) + " stop sequences");
    }
    for (const auto& s : st.stop) {
      if (s.empty()) bad_request("stop", "stop sequences must not be empty");
    }
  }
  if (const json* v = field(body, "stop_token_ids")) {
    st.stop_token_ids = parse_token_ids(*v, "stop_token_ids", ctx.tok.vocab_size());
  }
  if (auto b = boolean(body, "ignore_eos")) st.ignore_eos = *b;
  if (auto b = boolean(body, "include_stop_str_in_output")) st.include_stop_str_in_output = *b;
}

void parse_logit_bias(const json& body, int vocab, sampling::SamplingParams& sp) {
  const json* v = field(body, "logit_bias");
  if (!v) return;
  if (!v->is_object())
    bad_request("logit_bias", "logit_bias must be an object of token id -> bias");
  for (const auto& [key, bias] : v->items()) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != key.size() || key.empty()) {
      bad_request("logit_bias", "logit_bias key \"" + key + "\" is not a token id");
    }
    if (id < 0 || id >= vocab) {
      bad_request("logit_bias", "logit_bias token " + key + " is outside the vocabulary of " +
                                    std::to_string(vocab));
    }
    if (!bias.is_number() || !(std::abs(bias.get<double>()) <= 100.0)) {
      bad_request("logit_bias", "logit_bias values must be numbers in [-100, 100]");
    }
    sp.logit_bias.emplace_back(int32_t(id), bias.get<float>());
  }
}

// Everything the two endpoints share: sampling, stopping, n, streaming.
void parse_common(const json& body, const ParseContext& ctx, ParsedGeneration& out) {
  auto& sp = out.sampling;
  if (auto x = number(body, "temperature", 0.0, 2.0)) sp.temperature = float(*x);
  if (auto x = number(body, "top_p", 0.0, 1.0, /*lo_open=*/true)) sp.top_p = float(*x);
  if (auto x = integer(body, "top_k", -1, std::numeric_limits<int32_t>::max())) sp.top_k = int(*x);
  if (auto x = number(body, "min_p", 0.0, 1.0)) sp.min_p = float(*x);
  if (auto x = number(body, "presence_penalty", -2.0, 2.0)) sp.presence_penalty = float(*x);
  if (auto x = number(body, "frequency_penalty", -2.0, 2.0)) sp.frequency_penalty = float(*x);
  if (auto x = number(body, "repetition_penalty", 0.0, 10.0, true)) {
    sp.repetition_penalty = float(*x);
  }
  if (auto x = integer(body, "seed", INT64_MIN, INT64_MAX)) sp.seed = uint64_t(*x);
  parse_logit_bias(body, ctx.tok.vocab_size(), sp);
  if (auto x = integer(body, "n", 1, ctx.max_n)) out.n = int(*x);
  parse_stop(body, ctx, out.stopping);
  if (auto u = string(body, "user")) out.user = *u;

  if (auto s = boolean(body, "stream")) out.stream = *s;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_request("stream_options", "stream_options must be an object");
    if (!out.stream) bad_request("stream_options", "stream_options is only allowed with stream");
    if (auto b = boolean(*so, "include_usage")) out.include_usage = *b;
  }

  std::optional<int64_t> max_tokens = integer(body, "max_tokens", 1, ctx.max_model_len);
  if (auto m = integer(body, "max_completion_tokens", 1, ctx.max_model_len)) max_tokens = m;
  const char* prompt_param = out.chat ? "messages" : "prompt";
  for (const auto& p : out.prompts) {
    const int len = int(p.size());
    if (len == 0) bad_request(prompt_param, "the prompt is empty");
    if (len >= ctx.max_model_len) {
      bad_request(prompt_param, "the prompt has " + std::to_string(len) +
                                    " tokens; the model's context is " +
                                    std::to_string(ctx.max_model_len));
    }
    if (max_tokens && len + *max_tokens > ctx.max_model_len) {
      bad_request("max_tokens", "the prompt (" + std::to_string(len) +
                                    " tokens) plus max_tokens (" + std::to_string(*max_tokens) +
                                    ") exceeds the context of " +
                                    std::to_string(ctx.max_model_len) + " tokens");
    }
    out.max_tokens.push_back(max_tokens ? int(*max_tokens) : ctx.max_model_len - len);
  }
  sp.logprobs = out.logprobs;
  sp.top_logprobs = out.top_logprobs;
  try {
    sp.validate(ctx.tok.vocab_size());  // backstop for rules added to the sampler later
  } catch (const Error& e) {
    bad_request("", e.what());
  }
}

std::string text_of_content(const json& content, const std::string& role) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    bad_request("messages", "message content must be a string or a list of content parts");
  }
  std::string text;
  for (const auto& part : content) {
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    if (!type || !type->is_string()) bad_request("messages", "content parts need a \"type\"");
    if (*type != "text") {
      bad_request("messages", "content part type " + type->dump() + " is not supported");
    }
    const json* t = field(part, "text");
    if (!t || !t->is_string()) bad_request("messages", "text content parts need a string \"text\"");
    if (!text.empty()) text += "\n";  // vLLM joins text parts with newlines
    text += t->get<std::string>();
  }
  return text;
}

}  // namespace

json parse_json_body(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad_request("", "the request body is not valid JSON");
  if (!j.is_object()) bad_request("", "the request body must be a JSON object");
  return j;
}

void check_model(const json& body, const std::string& served_name) {
  const json* m = field(body, "model");
  if (!m) return;
  if (!m->is_string()) bad_request("model", "model must be a string");
  if (m->get<std::string>() != served_name) {
    throw ApiError(
        404,
        "The model `" + m->get<std::string>() + "` does not exist (serving `" + served_name + "`)",
        "model", "model_not_found");
  }
}

std::vector<int32_t> parse_token_ids(const json& v, const char* param, int vocab_size) {
  if (!v.is_array()) bad_request(param, std::string(param) + " must be a list of token ids");
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const auto& t : v) {
    if (!t.is_number_integer()) {
      bad_request(param, std::string(param) + " must be a list of integer token ids");
    }
    const int64_t id = t.is_number_unsigned()
                           ? int64_t(std::min<uint64_t>(t.get<uint64_t>(), INT32_MAX))
                           : t.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      bad_request(param, "token id " + t.dump() + " in " + param +
                             " is outside the vocabulary of " + std::to_string(vocab_size));
    }
    ids.push_back(int32_t(id));
  }
  return ids;
}

std::string render_chat_prompt(const json& body, const ParseContext& ctx) {
  const json* msgs = field(body, "messages");
  if (!msgs) bad_request("messages", "messages is required");
  if (!msgs->is_array() || msgs->empty()) {
    bad_request("messages", "messages must be a non-empty list");
  }
  json rendered = json::array();
  for (const auto& m : *msgs) {
    if (!m.is_object()) bad_request("messages", "each message must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad_request("messages", "each message needs a string role");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer") {
      bad_request("messages", "unknown message role \"" + r + "\"");
    }
    json copy = m;
    const json* content = field(m, "content");
    if (content) {
      copy["content"] = text_of_content(*content, r);
    } else if (r == "assistant") {
      copy["content"] = "";  // e.g. an assistant turn that only carries tool_calls
    } else {
      bad_request("messages", "a " + r + " message needs content");
    }
    rendered.push_back(std::move(copy));
  }
  if (!ctx.chat_template) bad_request("messages", "the served model has no chat template");
  json tools = nullptr;
  if (const json* t = field(body, "tools")) {
    if (!t->is_array()) bad_request("tools", "tools must be a list");
    tools = *t;
  }
  bool add_generation_prompt = true;
  if (auto b = boolean(body, "add_generation_prompt")) add_generation_prompt = *b;
  try {
    return ctx.chat_template->render(rendered, tools, add_generation_prompt);
  } catch (const Error& e) {
    bad_request("messages", std::string("the chat template failed: ") + e.what());
  }
}

ParsedGeneration parse_chat_request(const json& body, const ParseContext& ctx) {
  check_model(body, ctx.model_name);
  ParsedGeneration out;
  out.chat = true;
  const std::string prompt = render_chat_prompt(body, ctx);
  // The template already places BOS where the model wants it.
  out.prompts.push_back(ctx.tok.encode(prompt, {.add_special = false, .parse_special = true}));
  if (auto lp = boolean(body, "logprobs")) out.logprobs = *lp;
  if (auto k = integer(body, "top_logprobs", 0, ctx.max_logprobs)) {
    if (*k > 0 && !out.logprobs) bad_request("top_logprobs", "top_logprobs needs logprobs: true");
    out.top_logprobs = int(*k);
  }
  parse_common(body, ctx, out);
  return out;
}

ParsedGeneration parse_completion_request(const json& body, const ParseContext& ctx) {
  check_model(body, ctx.model_name);
  ParsedGeneration out;
  const json* p = field(body, "prompt");
  if (!p) bad_request("prompt", "prompt is required");
  const int vocab = ctx.tok.vocab_size();
  auto encode = [&](const json& s) { return ctx.tok.encode(s.get<std::string>()); };
  if (p->is_string()) {
    out.prompts.push_back(encode(*p));
  } else if (p->is_array() && !p->empty() && (*p)[0].is_string()) {
    for (const auto& s : *p) {
      if (!s.is_string()) bad_request("prompt", "a list prompt must hold only strings");
      out.prompts.push_back(encode(s));
    }
  } else if (p->is_array() && !p->empty() && (*p)[0].is_array()) {
    for (const auto& ids : *p) out.prompts.push_back(parse_token_ids(ids, "prompt", vocab));
  } else if (p->is_array() && !p->empty()) {
    out.prompts.push_back(parse_token_ids(*p, "prompt", vocab));
  } else {
    bad_request("prompt",
                "prompt must be a string, a list of strings, a list of token ids or a "
                "list of token id lists");
  }
  constexpr size_t kMaxPrompts = 64;  // bounds the engine requests one HTTP request can create
  if (out.prompts.size() > kMaxPrompts) {
    bad_request("prompt", "at most " + std::to_string(kMaxPrompts) + " prompts per request");
  }
  if (const json* lp = field(body, "logprobs")) {
    if (lp->is_boolean()) bad_request("logprobs", "logprobs must be an integer for completions");
    out.top_logprobs = int(*integer(body, "logprobs", 0, ctx.max_logprobs));
    out.logprobs = true;
  }
  if (auto e = boolean(body, "echo"); e && *e) bad_request("echo", "echo is not supported");
  parse_common(body, ctx, out);
  return out;
}

}  // namespace tessera::server
