// Parsing and validation of OpenAI request bodies (internal to the server module): a chat or
// completions body becomes a ParsedGeneration (prompt token ids + the protocol request fields),
// or an ApiError(400/404) naming the offending parameter. Pure functions over borrowed inputs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/request_check.h"
#include "tessera/protocol/request.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/server/tool_request.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::server {

// What one request may ask for; the same for HTTP and gRPC (request_validation.h checks them).
struct RequestLimits {
  int max_n = 8;              // choices per prompt
  int max_logprobs = 20;      // top_logprobs
  int max_stop = 8;           // stop strings
  int max_stop_bytes = 1024;  // one stop string
  int max_prompts = 64;       // prompts in one completions request
  int max_sequences = 64;     // prompts x n
  int max_logit_bias = 1024;  // logit_bias entries
  // Sum over the request's sequences of prompt + max_tokens; 0: 16 x the model's context. One
  // request cannot hold more than this much of the KV cache, however it spreads it.
  int64_t max_request_tokens = 0;
  // Text of special tokens (<|im_end|>, ...) in user and tool messages stays text, so a user
  // cannot forge a turn boundary or a role; off: it becomes the control token (vLLM's behaviour).
  bool user_special_tokens_as_text = true;
};

struct ParseContext {
  const tokenizer::Tokenizer& tok;
  const tokenizer::ChatTemplate* chat_template = nullptr;  // null: chat requests are refused
  engine::ModelInfo model;  // the served model: its name, context, vocabulary and KV cache
  RequestLimits limits;
};

struct ParsedGeneration {
  bool chat = false;
  std::vector<std::vector<int32_t>> prompts;  // completions may carry several; chat exactly one
  std::vector<int> max_tokens;                // per prompt (explicit or context - prompt length)
  int n = 1;
  sampling::SamplingParams sampling;
  protocol::StoppingParams stopping;  // max_tokens is filled per prompt from `max_tokens`
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;  // chat: logprobs=true; completions: logprobs given (an int)
  int top_logprobs = 0;
  std::string user;
  std::vector<engine::ValidRequest> requests;  // one per prompt, from validate_generation
  ToolRequest tools;  // chat: tools, tool_choice, parallel_tool_calls
};

// Throws ApiError (400 bad parameter, 404 unknown model).
ParsedGeneration parse_chat_request(const nlohmann::ordered_json& body, const ParseContext& ctx);
ParsedGeneration parse_completion_request(const nlohmann::ordered_json& body,
                                          const ParseContext& ctx);

// A rendered chat prompt and the byte ranges in it that hold user/tool text with special-token
// text in it (kept as text when RequestLimits::user_special_tokens_as_text).
struct ChatPrompt {
  std::string text;
  std::vector<tokenizer::Tokenizer::Span> literal;
};
// Messages (validated: roles, content parts) -> prompt through the chat template. Both front
// ends render chat through here. `tools`: null or a list.
ChatPrompt render_chat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                       bool add_generation_prompt, const ParseContext& ctx);
// The request body's messages, tools and add_generation_prompt through render_chat.
ChatPrompt render_chat_prompt(const nlohmann::ordered_json& body, const ParseContext& ctx);
// Prompt ids: special tokens parsed except inside the literal ranges; no BOS added (the template
// writes it).
std::vector<int32_t> encode_chat(const ChatPrompt& p, const tokenizer::Tokenizer& tok);
// Checks `model` (when present) against the served name: 404 otherwise.
void check_model(const nlohmann::ordered_json& body, const std::string& served_name);
// A list of token ids inside the vocabulary, else 400 naming `param`.
std::vector<int32_t> parse_token_ids(const nlohmann::ordered_json& v, const char* param,
                                     int vocab_size);
// Parses the body as a JSON object; 400 "invalid JSON" otherwise.
nlohmann::ordered_json parse_json_body(const std::string& body);

}  // namespace tessera::server
