// ChatTemplate: the variables Hugging Face's apply_chat_template passes to a chat template
// (messages, tools, documents, add_generation_prompt, special tokens, extra kwargs), rendered
// with the sandboxed Jinja interpreter.
#include "tessera/tokenizer/chat_template.h"

#include "tessera/core/error.h"

namespace tessera::tokenizer {

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token,
                           TemplateLimits limits)
    : source_(std::move(source)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)),
      limits_(limits),
      tmpl_(source_) {}

namespace {
template <typename Json>
jinja::Value build_context(const Json& messages, const Json& tools, bool add_generation_prompt,
                           const Json& extra, const std::string& bos, const std::string& eos) {
  if (!messages.is_array())
    fail(ErrorCode::kInvalidArgument, "chat template: messages must be an array");
  if (!extra.is_object())
    fail(ErrorCode::kInvalidArgument, "chat template: extra must be an object");
  using jinja::Value;
  Value ctx = Value::dict();
  auto& d = ctx.dict_mut();
  d.set("messages", Value::from_json(messages));
  d.set("tools", Value::from_json(tools));
  d.set("documents", Value(nullptr));
  d.set("add_generation_prompt", Value(add_generation_prompt));
  d.set("bos_token", Value(bos));
  d.set("eos_token", Value(eos));
  for (auto it = extra.begin(); it != extra.end(); ++it)
    d.set(it.key(), Value::from_json(it.value()));
  return ctx;
}
}  // namespace

std::string ChatTemplate::render(const nlohmann::json& messages, const RenderOptions& opt) const {
  return tmpl_.render_value(build_context(messages, opt.tools, opt.add_generation_prompt, opt.extra,
                                          bos_token_, eos_token_),
                            limits_);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  return tmpl_.render_value(
      build_context(messages, tools, add_generation_prompt, extra, bos_token_, eos_token_),
      limits_);
}

}  // namespace tessera::tokenizer
