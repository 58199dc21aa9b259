#include "tessera/server/openai_response.h"

namespace tessera::server {
namespace {

using json = nlohmann::ordered_json;

json bytes_array(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

const char* object_name(const ResponseMeta& meta, bool chunk) {
  if (meta.chat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

json head(const ResponseMeta& meta, bool chunk) {
  json j;
  j["id"] = meta.id;
  j["object"] = object_name(meta, chunk);
  j["created"] = meta.created;
  j["model"] = meta.model;
  return j;
}

json finish_json(protocol::FinishReason r, bool made_tool_calls = false) {
  if (r == protocol::FinishReason::kNone) return nullptr;
  // OpenAI ends a turn that called tools with "tool_calls"; a call cut by max_tokens is not one.
  if (made_tool_calls && r == protocol::FinishReason::kStop) return "tool_calls";
  return finish_reason_text(r);
}

bool all_space(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

const char* finish_reason_text(protocol::FinishReason r) { return protocol::finish_reason_name(r); }

json tool_calls_json(const std::vector<ToolCall>& calls) {
  json a = json::array();
  for (const auto& c : calls) {
    a.push_back({{"id", c.id},
                 {"type", "function"},
                 {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return a;
}

json tool_call_deltas(const ToolCall& call, int index) {
  return json::array({{{"index", index},
                       {"id", call.id},
                       {"type", "function"},
                       {"function", {{"name", call.name}, {"arguments", ""}}}},
                      {{"index", index}, {"function", {{"arguments", call.arguments}}}}});
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json chat_logprobs(const tokenizer::Tokenizer& tok,
                   const std::vector<sampling::SampleResult>& results) {
  json content = json::array();
  for (const auto& r : results) {
    const std::string piece = tok.token_bytes(r.token);
    json top = json::array();
    for (const auto& t : r.top) {
      const std::string tp = tok.token_bytes(t.token);
      top.push_back({{"token", tp}, {"logprob", t.logprob}, {"bytes", bytes_array(tp)}});
    }
    content.push_back({{"token", piece},
                       {"logprob", r.logprob},
                       {"bytes", bytes_array(piece)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json completion_logprobs(const tokenizer::Tokenizer& tok,
                         const std::vector<sampling::SampleResult>& results, size_t text_offset) {
  json tokens = json::array(), token_lp = json::array(), top = json::array(),
       offsets = json::array();
  for (const auto& r : results) {
    const std::string piece = tok.token_bytes(r.token);
    tokens.push_back(piece);
    token_lp.push_back(r.logprob);
    json alts = json::object();
    for (const auto& t : r.top) alts[tok.token_bytes(t.token)] = t.logprob;
    top.push_back(std::move(alts));
    offsets.push_back(text_offset);
    text_offset += piece.size();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_lp)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

json full_response(const ResponseMeta& meta, const tokenizer::Tokenizer& tok,
                   const std::vector<ChoiceState>& choices, const Usage& usage) {
  json j = head(meta, /*chunk=*/false);
  json arr = json::array();
  for (const auto& c : choices) {
    json choice;
    choice["index"] = c.index;
    if (meta.chat) {
      if (!c.tools_parsed) {
        choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      } else {
        // Whitespace around calls is not an answer: content is null then, as OpenAI sends it.
        const bool none = !c.tool_calls.empty() && all_space(c.content);
        choice["message"] = {{"role", "assistant"},
                             {"content", none ? json(nullptr) : json(c.content)}};
        if (!c.tool_calls.empty()) choice["message"]["tool_calls"] = tool_calls_json(c.tool_calls);
      }
      choice["logprobs"] = meta.logprobs ? chat_logprobs(tok, c.logprobs) : json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = meta.logprobs ? completion_logprobs(tok, c.logprobs, 0) : json(nullptr);
    }
    choice["finish_reason"] = finish_json(c.finish, !c.tool_calls.empty());
    arr.push_back(std::move(choice));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return j;
}

json stream_chunk(const ResponseMeta& meta, const ChunkPart& part, bool with_null_usage) {
  json j = head(meta, /*chunk=*/true);
  json choice;
  choice["index"] = part.index;
  if (meta.chat) {
    json delta = json::object();
    if (part.role) delta["role"] = *part.role;
    if (part.content) delta["content"] = *part.content;
    if (!part.tool_calls.is_null()) delta["tool_calls"] = part.tool_calls;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = part.content.value_or("");
  }
  choice["logprobs"] = part.logprobs;
  choice["finish_reason"] = finish_json(part.finish, part.made_tool_calls);
  j["choices"] = json::array({std::move(choice)});
  if (with_null_usage) j["usage"] = nullptr;
  return j;
}

json usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  json j = head(meta, /*chunk=*/true);
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  return j;
}

}  // namespace tessera::server
