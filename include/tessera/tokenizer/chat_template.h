// Chat templates (tokenizer module): turns a list of chat messages into the prompt text a model
// was trained on, by rendering the model's Jinja chat template with our sandboxed interpreter
// exactly as Hugging Face transformers' apply_chat_template renders it with Python jinja2. A
// ChatTemplate parses its source once and is immutable afterwards (render is const and
// thread-safe).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tessera/tokenizer/jinja.h"

namespace tessera::tokenizer {

// Declared outside ChatTemplate so `= {}` default arguments work (a nested struct with member
// initializers is incomplete inside its class).
struct ChatRenderOptions {
  bool add_generation_prompt = true;
  nlohmann::json tools = nullptr;                   // null: the template sees tools = None
  nlohmann::json extra = nlohmann::json::object();  // more template variables
};

class ChatTemplate {
 public:
  // Parses once; throws tessera::Error(kInvalidArgument) with line/column for a bad template.
  ChatTemplate(std::string source, std::string bos_token = "", std::string eos_token = "",
               TemplateLimits limits = {});

  using RenderOptions = ChatRenderOptions;

  // messages: array of {role, content (string or list of {type:"text", text}), optional
  // tool_calls, name, tool_call_id}. The template sees messages, tools, documents (None),
  // add_generation_prompt, bos_token, eos_token and every key of opt.extra.
  // Note: nlohmann::json sorts object keys; use the ordered_json overload to keep the caller's
  // key order (it matters when a template prints a dict, e.g. tool schemas through tojson).
  std::string render(const nlohmann::json& messages, const RenderOptions& opt = {}) const;
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string bos_token_;
  std::string eos_token_;
  TemplateLimits limits_;
  jinja::Template tmpl_;
};

}  // namespace tessera::tokenizer
