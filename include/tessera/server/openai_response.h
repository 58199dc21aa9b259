// OpenAI response shapes (internal to the server module): non-streaming chat/completion bodies,
// streaming chunks ("chat.completion.chunk" / "text_completion"), usage and logprobs objects.
// Pure functions; the generation job owns the ChoiceState they read.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessera/protocol/request.h"
#include "tessera/server/tool_calls.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::server {

struct ResponseMeta {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model;
  bool chat = false;
  bool logprobs = false;  // whether choices carry logprobs objects (else null)
};

struct ChoiceState {
  int index = 0;
  std::string engine_id;
  std::string text;
  std::vector<sampling::SampleResult> logprobs;
  protocol::FinishReason finish = protocol::FinishReason::kNone;
  int prompt_tokens = 0;
  int cached_tokens = 0;  // of prompt_tokens, found in the prefix cache
  int completion_tokens = 0;
  // Chat with tool parsing: the text outside calls (content) and the calls, instead of `text`.
  bool tools_parsed = false;
  std::string content;
  std::vector<ToolCall> tool_calls;
  bool done() const { return finish != protocol::FinishReason::kNone; }
};

struct Usage {
  int prompt_tokens = 0;
  int cached_tokens = 0;  // of prompt_tokens: prompt_tokens_details.cached_tokens
  int completion_tokens = 0;
};

nlohmann::ordered_json usage_json(const Usage& u);
const char* finish_reason_text(protocol::FinishReason r);  // "stop" / "length" / ...
// The message's tool_calls list: [{id, type: "function", function: {name, arguments}}].
nlohmann::ordered_json tool_calls_json(const std::vector<ToolCall>& calls);

// Logprobs of `results` in the endpoint's shape: chat {"content": [...]}; completions
// {"tokens", "token_logprobs", "top_logprobs", "text_offset"} with offsets from `text_offset`.
nlohmann::ordered_json chat_logprobs(const tokenizer::Tokenizer& tok,
                                     const std::vector<sampling::SampleResult>& results);
nlohmann::ordered_json completion_logprobs(const tokenizer::Tokenizer& tok,
                                           const std::vector<sampling::SampleResult>& results,
                                           size_t text_offset);

// The whole non-streaming response.
nlohmann::ordered_json full_response(const ResponseMeta& meta, const tokenizer::Tokenizer& tok,
                                     const std::vector<ChoiceState>& choices, const Usage& usage);

// One streaming chunk for one choice. Chat: `delta` is the delta object; completions: `text`.
struct ChunkPart {
  int index = 0;
  std::optional<std::string> role;  // chat: the first chunk's "assistant"
  std::optional<std::string> content;
  nlohmann::ordered_json logprobs = nullptr;
  protocol::FinishReason finish = protocol::FinishReason::kNone;
  nlohmann::ordered_json tool_calls = nullptr;  // chat: the delta's tool_calls (tool_call_deltas)
  bool made_tool_calls = false;                 // with finish kStop: finish_reason "tool_calls"
};
// A completed call as OpenAI streams it: the opening delta (index, id, type, function.name and
// "arguments": "") and then the arguments, as two entries for the delta's tool_calls list.
nlohmann::ordered_json tool_call_deltas(const ToolCall& call, int index);
nlohmann::ordered_json stream_chunk(const ResponseMeta& meta, const ChunkPart& part,
                                    bool with_null_usage);
// The include_usage chunk: empty choices and the usage.
nlohmann::ordered_json usage_chunk(const ResponseMeta& meta, const Usage& usage);

}  // namespace tessera::server
