// Byte-level BPE encode/decode on arbitrary text: decode(encode(x)) == x for valid UTF-8 when
// special tokens are not parsed, ids stay in the vocabulary, and literal spans keep special-token
// text as text.
#include <string>

#include "../common/small_tokenizer.h"
#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/tokenizer/unicode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static const tokenizer::Tokenizer tok = testing::small_chatml_tokenizer();
  const std::string text(fuzz::as_text(data, size));
  try {
    const auto plain = tok.encode(text, {.add_special = false, .parse_special = false});
    for (int32_t id : plain) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id outside the vocab");
    const std::string back = tok.decode(plain);
    if (tokenizer::utf8_lossy(text) == text) {
      FUZZ_CHECK(back == text, "decode(encode(x)) != x for valid UTF-8");
    }
    // The whole text marked literal: the same ids as not parsing special tokens at all.
    const tokenizer::Tokenizer::Span all{0, text.size()};
    const auto lit = tok.encode(
        text, {.add_special = false, .parse_special = true, .literal = std::span(&all, 1)});
    FUZZ_CHECK(lit == plain, "a literal span parsed a special token");
    const auto parsed = tok.encode(text, {.add_special = false, .parse_special = true});
    FUZZ_CHECK(tok.decode(parsed) == back, "special parsing changed the decoded text");
    for (const auto& [b, e] : tok.special_token_spans(text)) {
      FUZZ_CHECK(b < e && e <= text.size(), "a special-token span outside the text");
    }
  } catch (const Error&) {
  }
  return 0;
}
