// A small byte-level BPE tokenizer with ChatML special tokens and chat template, for tests and
// fuzz targets that need a real Tokenizer without a model file. Built fresh on each call.
#pragma once

#include <string>

#include "tessera/tokenizer/tokenizer.h"
#include "tessera/tokenizer/unicode.h"

namespace tessera::testing {

inline constexpr const char* kSmallChatmlTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// `chat_template`: another template (e.g. one with a tool-call format) over the same tokens.
inline tokenizer::Tokenizer small_chatml_tokenizer(
    const std::string& chat_template = kSmallChatmlTemplate) {
  using namespace tokenizer;
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kByteLevelBpe;
  spec.pre = "gpt2";
  for (int b = 0; b < 256; ++b) {
    std::string t;
    append_utf8(t, byte_to_codepoint(uint8_t(b)));
    spec.tokens.push_back(t);
  }
  for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0w", "\xC4\xA0wo"}) {
    spec.tokens.push_back(t);
  }
  spec.merges = {"l l", "h e", "he ll", "hell o", "\xC4\xA0 w", "\xC4\xA0w o"};
  spec.token_types.assign(spec.tokens.size(), kTokenNormal);
  for (const char* t : {"<|im_start|>", "<|im_end|>"}) {
    spec.tokens.push_back(t);
    spec.token_types.push_back(kTokenControl);
  }
  spec.eos_id = int32_t(spec.tokens.size()) - 1;
  spec.chat_template = chat_template;
  return Tokenizer::from_spec(std::move(spec));
}

}  // namespace tessera::testing
