// The ParseContext both request fuzz targets parse against: the small ChatML tokenizer and its
// template, a 256-token context and a 64 x 16-token KV cache. Built once per process.
#pragma once

#include "../common/small_tokenizer.h"
#include "tessera/server/openai_request.h"

namespace tessera::fuzz {

inline const server::ParseContext& request_context() {
  static const tokenizer::Tokenizer tok = testing::small_chatml_tokenizer();
  static const tokenizer::ChatTemplate tmpl(tok.chat_template());
  static const server::ParseContext ctx{.tok = tok,
                                        .chat_template = &tmpl,
                                        .model = {.id = "m",
                                                  .max_model_len = 256,
                                                  .vocab_size = tok.vocab_size(),
                                                  .num_blocks = 64,
                                                  .block_size = 16}};
  return ctx;
}

}  // namespace tessera::fuzz
