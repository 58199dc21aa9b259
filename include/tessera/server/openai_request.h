// Parsing and validation of OpenAI request bodies (internal to the server module): a chat or
// completions body becomes a ParsedGeneration (prompt token ids + the protocol request fields),
// or an ApiError(400/404) naming the offending parameter. Pure functions over borrowed inputs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessera/protocol/request.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::server {

struct ParseContext {
  const tokenizer::Tokenizer& tok;
  const tokenizer::ChatTemplate* chat_template = nullptr;  // null: chat requests are refused
  std::string model_name;
  int max_model_len = 0;
  int max_n = 8;
  int max_logprobs = 20;
  int max_stop = 8;
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
};

// Throws ApiError (400 bad parameter, 404 unknown model).
ParsedGeneration parse_chat_request(const nlohmann::ordered_json& body, const ParseContext& ctx);
ParsedGeneration parse_completion_request(const nlohmann::ordered_json& body,
                                          const ParseContext& ctx);

// Chat messages -> prompt text through the chat template (validates roles and content parts).
std::string render_chat_prompt(const nlohmann::ordered_json& body, const ParseContext& ctx);
// Checks `model` (when present) against the served name: 404 otherwise.
void check_model(const nlohmann::ordered_json& body, const std::string& served_name);
// A list of token ids inside the vocabulary, else 400 naming `param`.
std::vector<int32_t> parse_token_ids(const nlohmann::ordered_json& v, const char* param,
                                     int vocab_size);
// Parses the body as a JSON object; 400 "invalid JSON" otherwise.
nlohmann::ordered_json parse_json_body(const std::string& body);

}  // namespace tessera::server
