// OpenAI request bodies -> ParsedGeneration. Every check names its parameter so a client sees
// which field was wrong; null values count as absent, as in OpenAI's API.
#include "tessera/server/openai_request.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <span>
#include <string_view>

#include "tessera/json/bounded_json.h"
#include "tessera/server/api_error.h"
#include "tessera/server/request_validation.h"
#include "tessera/server/response_format.h"
#include "tessera/server/tool_request.h"

namespace tessera::server {
namespace {

using json = nlohmann::ordered_json;

const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// Range checks are request_validation's; checking here too, on the double, gives 1e300 a
// message with its range instead of one about float overflow.
std::optional<double> number(const json& body, const NumberRange& r) {
  const std::string key(r.param);
  const json* v = field(body, key.c_str());
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(key, key + " must be a number");
  const double x = v->get<double>();
  check_param_range(r, x);
  return x;
}

std::optional<int64_t> integer(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_float()) {
    // 1e30 or 5.0: a whole number written as a float is judged by its value, as Python would.
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::trunc(d)) {
      bad_request(key, std::string(key) + " must be an integer, got " + v->dump());
    }
    x = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : int64_t(d);
  } else if (!v->is_number_integer()) {
    bad_request(key, std::string(key) + " must be an integer");
  } else {
    x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                                                                            : v->get<int64_t>();
  }
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
  }
  if (const json* v = field(body, "stop_token_ids")) {
    st.stop_token_ids = parse_token_ids(*v, "stop_token_ids", ctx.tok.vocab_size());
  }
  if (auto b = boolean(body, "ignore_eos")) st.ignore_eos = *b;
  if (auto b = boolean(body, "include_stop_str_in_output")) st.include_stop_str_in_output = *b;
}

void parse_logit_bias(const json& body, int vocab, int max_entries, sampling::SamplingParams& sp) {
  const json* v = field(body, "logit_bias");
  if (!v) return;
  if (!v->is_object())
    bad_request("logit_bias", "logit_bias must be an object of token id -> bias");
  if (int(v->size()) > max_entries) {
    bad_request("logit_bias", "logit_bias has " + std::to_string(v->size()) + " entries; at most " +
                                  std::to_string(max_entries));
  }
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
    if (!bias.is_number()) bad_request("logit_bias", "logit_bias values must be numbers");
    check_param_range(ranges::kLogitBias, bias.get<double>());
    sp.logit_bias.emplace_back(int32_t(id), bias.get<float>());
  }
}

// Every field either endpoint reads. Anything else is refused by name rather than ignored: a
// client that sends a field we do not implement must not believe it got what it asked for.
constexpr std::string_view kCommonFields[] = {"model",
                                              "n",
                                              "temperature",
                                              "top_p",
                                              "top_k",
                                              "min_p",
                                              "presence_penalty",
                                              "frequency_penalty",
                                              "repetition_penalty",
                                              "seed",
                                              "logit_bias",
                                              "stop",
                                              "stop_token_ids",
                                              "ignore_eos",
                                              "include_stop_str_in_output",
                                              "user",
                                              "stream",
                                              "stream_options",
                                              "max_tokens",
                                              "max_completion_tokens",
                                              "logprobs",
                                              // structured outputs (response_format.h)
                                              "response_format",
                                              "guided_json",
                                              "guided_regex",
                                              "guided_choice",
                                              "guided_grammar"};
constexpr std::string_view kChatFields[] = {"messages",     "tools",
                                            "tool_choice",  "parallel_tool_calls",
                                            "top_logprobs", "add_generation_prompt"};
constexpr std::string_view kCompletionFields[] = {"prompt", "echo"};

void check_known_fields(const json& body, std::span<const std::string_view> endpoint_fields) {
  auto known = [&](const std::string& key) {
    return std::ranges::find(kCommonFields, key) != std::end(kCommonFields) ||
           std::ranges::find(endpoint_fields, key) != endpoint_fields.end();
  };
  for (const auto& [key, value] : body.items()) {
    if (value.is_null()) continue;  // null counts as absent, as in OpenAI's API
    if (!known(key)) bad_request(key, "Unrecognized request argument supplied: " + key);
  }
}

// Everything the two endpoints share: sampling, stopping, n, streaming.
void parse_common(const json& body, const ParseContext& ctx, ParsedGeneration& out) {
  auto& sp = out.sampling;
  using namespace ranges;
  if (auto x = number(body, kTemperature)) sp.temperature = float(*x);
  if (auto x = number(body, kTopP)) sp.top_p = float(*x);
  if (auto x = integer(body, "top_k", -1, std::numeric_limits<int32_t>::max())) sp.top_k = int(*x);
  if (auto x = number(body, kMinP)) sp.min_p = float(*x);
  if (auto x = number(body, kPresencePenalty)) sp.presence_penalty = float(*x);
  if (auto x = number(body, kFrequencyPenalty)) sp.frequency_penalty = float(*x);
  if (auto x = number(body, kRepetitionPenalty)) sp.repetition_penalty = float(*x);
  if (auto x = integer(body, "seed", INT64_MIN, INT64_MAX)) sp.seed = uint64_t(*x);
  parse_logit_bias(body, ctx.tok.vocab_size(), ctx.limits.max_logit_bias, sp);
  if (auto x = integer(body, "n", 1, ctx.limits.max_n)) out.n = int(*x);
  parse_stop(body, ctx, out.stopping);
  if (auto u = string(body, "user")) out.user = *u;

  if (auto s = boolean(body, "stream")) out.stream = *s;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_request("stream_options", "stream_options must be an object");
    if (!out.stream) bad_request("stream_options", "stream_options is only allowed with stream");
    if (auto b = boolean(*so, "include_usage")) out.include_usage = *b;
  }

  std::optional<int64_t> max_tokens = integer(body, "max_tokens", 1, ctx.model.max_model_len);
  if (auto m = integer(body, "max_completion_tokens", 1, ctx.model.max_model_len)) max_tokens = m;
  for (const auto& p : out.prompts) {
    out.max_tokens.push_back(max_tokens ? int(*max_tokens)
                                        : ctx.model.max_model_len - int(p.size()));
  }
  sp.logprobs = out.logprobs;
  sp.top_logprobs = out.top_logprobs;
  if (!out.chat) sp.grammar = parse_output_constraint(body);  // chat: parse_chat_request
  out.requests = validate_generation(out, ctx);
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
  json j;
  try {
    j = tessera::json::parse_ordered(body, tessera::json::kRequestLimits, "the request body");
  } catch (const Error& e) {
    bad_request("", e.what());
  }
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

namespace {

constexpr std::string_view kMarkOpen = "\xEE\x80\x80";   // U+E000, private use
constexpr std::string_view kMarkClose = "\xEE\x80\x81";  // U+E001

// Replaces each special-token text in `content` by a marker (U+E000 nonce index U+E001) and keeps
// the original in `stash`. The nonce is per request, so a client cannot forge a marker.
std::string mark_special_text(const std::string& content, const tokenizer::Tokenizer& tok,
                              const std::string& nonce, std::vector<std::string>& stash) {
  const auto spans = tok.special_token_spans(content);
  if (spans.empty()) return content;
  std::string out;
  size_t at = 0;
  for (const auto& [b, e] : spans) {
    out.append(content, at, b - at);
    out.append(kMarkOpen).append(nonce).append(std::to_string(stash.size())).append(kMarkClose);
    stash.push_back(content.substr(b, e - b));
    at = e;
  }
  out.append(content, at, std::string::npos);
  return out;
}

// Puts the stashed texts back in place of their markers and records where they landed.
void unmark(ChatPrompt& p, const std::string& nonce, const std::vector<std::string>& stash) {
  const std::string open = std::string(kMarkOpen) + nonce;
  std::string out;
  size_t at = 0, found = 0;
  for (size_t m = p.text.find(open); m != std::string::npos; m = p.text.find(open, at)) {
    const size_t num = m + open.size();
    const size_t close = p.text.find(kMarkClose, num);
    size_t idx = stash.size();
    if (close != std::string::npos && close > num && close - num < 8) {
      idx = size_t(std::strtoul(p.text.substr(num, close - num).c_str(), nullptr, 10));
    }
    if (idx >= stash.size()) break;
    out.append(p.text, at, m - at);
    p.literal.emplace_back(out.size(), out.size() + stash[idx].size());
    out += stash[idx];
    at = close + kMarkClose.size();
    ++found;
  }
  out.append(p.text, at, std::string::npos);
  if (found != stash.size()) {
    // The template rewrote the content (escaped, sliced or upper-cased it): we cannot tell
    // where the user's text went, so we refuse rather than let it act as control tokens.
    bad_request("messages",
                "a user or tool message contains the text of a special token, and this chat "
                "template transforms message content, so it cannot be kept as text");
  }
  p.text = std::move(out);
}

// An assistant turn's tool_calls as templates expect them: OpenAI sends function.arguments as
// a JSON string, while templates (Qwen2.5's `arguments | tojson`, Llama 3's, Mistral's) want the
// mapping, as vLLM gives it to them. Arguments that are not a JSON object stay a string.
json template_tool_calls(const json& calls, const std::string& where) {
  if (!calls.is_array()) bad_request("messages", where + ".tool_calls must be a list");
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    const std::string at = where + ".tool_calls[" + std::to_string(k) + "]";
    const json& c = calls[k];
    const json* fn = c.is_object() ? field(c, "function") : nullptr;
    const json* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
    if (!name || !name->is_string())
      bad_request("messages", at + ".function.name must be a string");
    json copy = c;
    if (const json* args = field(*fn, "arguments"); args && args->is_string()) {
      try {
        json parsed = tessera::json::parse_ordered(args->get<std::string>(),
                                                   tessera::json::kRequestLimits, at);
        if (parsed.is_object()) copy["function"]["arguments"] = std::move(parsed);
      } catch (const Error&) {
        // not JSON: the template gets the string as sent
      }
    } else if (args && !args->is_object()) {
      bad_request("messages", at + ".function.arguments must be a string or an object");
    }
    out.push_back(std::move(copy));
  }
  return out;
}

}  // namespace

ChatPrompt render_chat(const json& msgs, const json& tools, bool add_generation_prompt,
                       const ParseContext& ctx) {
  if (!msgs.is_array() || msgs.empty()) {
    bad_request("messages", "messages must be a non-empty list");
  }
  const bool protect = ctx.limits.user_special_tokens_as_text;
  std::string nonce;
  std::vector<std::string> stash;
  json rendered = json::array();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_request("messages", where + " must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad_request("messages", where + ".role must be a string");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer") {
      bad_request("messages", where + ".role \"" + r +
                                  "\" is not one of system, user, assistant, tool, developer");
    }
    json copy = m;
    const json* content = field(m, "content");
    if (content) {
      std::string text = text_of_content(*content, r);
      if (protect && (r == "user" || r == "tool")) {
        if (nonce.empty()) {
          std::random_device rd;
          nonce = std::to_string(rd()) + std::to_string(rd()) + ":";
        }
        text = mark_special_text(text, ctx.tok, nonce, stash);
      }
      copy["content"] = std::move(text);
    } else if (r == "assistant") {
      copy["content"] = "";  // e.g. an assistant turn that only carries tool_calls
    } else {
      bad_request("messages", where + ": a " + r + " message needs content");
    }
    if (const json* calls = field(m, "tool_calls"))
      copy["tool_calls"] = template_tool_calls(*calls, where);
    rendered.push_back(std::move(copy));
  }
  if (!ctx.chat_template) bad_request("messages", "the served model has no chat template");
  if (!tools.is_null() && !tools.is_array()) bad_request("tools", "tools must be a list");
  ChatPrompt p;
  try {
    p.text = ctx.chat_template->render(rendered, tools, add_generation_prompt);
  } catch (const Error& e) {
    bad_request("messages", std::string("the chat template failed: ") + e.what());
  }
  if (!stash.empty()) unmark(p, nonce, stash);
  return p;
}

std::vector<int32_t> encode_chat(const ChatPrompt& p, const tokenizer::Tokenizer& tok) {
  // The template already places BOS where the model wants it.
  return tok.encode(p.text, {.add_special = false, .parse_special = true, .literal = p.literal});
}

ChatPrompt render_chat_prompt(const json& body, const ParseContext& ctx) {
  const json* msgs = field(body, "messages");
  if (!msgs) bad_request("messages", "messages is required");
  const json* tools = field(body, "tools");
  bool add_generation_prompt = true;
  if (auto b = boolean(body, "add_generation_prompt")) add_generation_prompt = *b;
  return render_chat(*msgs, tools ? *tools : json(nullptr), add_generation_prompt, ctx);
}

ParsedGeneration parse_chat_request(const json& body, const ParseContext& ctx) {
  check_known_fields(body, kChatFields);
  check_model(body, ctx.model.id);
  ParsedGeneration out;
  out.chat = true;
  const std::string constraint = parse_output_constraint(body);
  const ToolFormat format =
      ctx.chat_template ? detect_tool_format(ctx.chat_template->source()) : ToolFormat::kNone;
  out.tools = parse_tool_request(body, format, !constraint.empty());
  out.sampling.grammar = out.tools.parse_output() ? tool_call_grammar(out.tools) : "";
  if (out.sampling.grammar.empty()) out.sampling.grammar = constraint;
  const json* msgs = field(body, "messages");
  if (!msgs) bad_request("messages", "messages is required");
  bool add_generation_prompt = true;
  if (auto b = boolean(body, "add_generation_prompt")) add_generation_prompt = *b;
  out.prompts.push_back(encode_chat(
      render_chat(*msgs, out.tools.template_tools, add_generation_prompt, ctx), ctx.tok));
  if (auto lp = boolean(body, "logprobs")) out.logprobs = *lp;
  if (auto k = integer(body, "top_logprobs", 0, ctx.limits.max_logprobs)) {
    if (*k > 0 && !out.logprobs) bad_request("top_logprobs", "top_logprobs needs logprobs: true");
    out.top_logprobs = int(*k);
  }
  parse_common(body, ctx, out);
  return out;
}

ParsedGeneration parse_completion_request(const json& body, const ParseContext& ctx) {
  check_known_fields(body, kCompletionFields);
  check_model(body, ctx.model.id);
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
  if (const json* lp = field(body, "logprobs")) {
    if (lp->is_boolean()) bad_request("logprobs", "logprobs must be an integer for completions");
    out.top_logprobs = int(*integer(body, "logprobs", 0, ctx.limits.max_logprobs));
    out.logprobs = true;
  }
  if (auto e = boolean(body, "echo"); e && *e) bad_request("echo", "echo is not supported");
  parse_common(body, ctx, out);
  return out;
}

}  // namespace tessera::server
