// IncrementalDecoder: streamed text equals decode() of the whole sequence, and no chunk ever ends
// inside a UTF-8 character, also when characters are split across byte tokens.
#include <gtest/gtest.h>

#include <random>

#include "tessera/tokenizer/detokenizer.h"
#include "tessera/tokenizer/unicode.h"

namespace tessera::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// Byte-level vocabulary of the 256 byte symbols plus one control token.
Tokenizer byte_tokenizer() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kByteLevelBpe;
  for (int b = 0; b < 256; ++b) {
    std::string t;
    append_utf8(t, byte_to_codepoint(uint8_t(b)));
    spec.tokens.push_back(t);
  }
  spec.tokens.push_back("<|end|>");
  spec.token_types.assign(spec.tokens.size(), kTokenNormal);
  spec.token_types.back() = kTokenControl;
  return Tokenizer::from_spec(spec);
}

TEST(IncrementalDecoder, HoldsPartialCharacters) {
  const Tokenizer tok = byte_tokenizer();
  IncrementalDecoder dec(tok);
  // "é" = C3 A9, "😀" = F0 9F 98 80, one byte token each.
  EXPECT_EQ(dec.push('a'), "a");
  EXPECT_EQ(dec.push(0xC3), "");
  EXPECT_EQ(dec.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(dec.push(0xF0), "");
  EXPECT_EQ(dec.push(0x9F), "");
  EXPECT_EQ(dec.push(0x98), "");
  EXPECT_EQ(dec.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.push(256), "");  // control token skipped
  EXPECT_EQ(dec.flush(), "");
}

TEST(IncrementalDecoder, InvalidBytesBecomeReplacementChars) {
  const Tokenizer tok = byte_tokenizer();
  IncrementalDecoder dec(tok, /*skip_special=*/false);
  EXPECT_EQ(dec.push(0xFF), "\xEF\xBF\xBD");  // never valid: emitted at once
  EXPECT_EQ(dec.push(0xE2), "");              // could still complete
  EXPECT_EQ(dec.push('x'), "\xEF\xBF\xBDx");  // it did not
  EXPECT_EQ(dec.push(256), "<|end|>");
  EXPECT_EQ(dec.push(0xE2), "");
  EXPECT_EQ(dec.push(0x82), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");  // truncated tail at the end
}

TEST(IncrementalDecoder, RandomStreamsMatchDecode) {
  const Tokenizer tok = byte_tokenizer();
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<uint32_t> cp_dist(0, 0x10FFFF);
  std::uniform_int_distribution<int> len(1, 30), byte(0, 255), coin(0, 9);
  for (int iter = 0; iter < 300; ++iter) {
    // Mostly valid text with multi-byte characters, sometimes a stray byte or a control token.
    Ids ids;
    for (int n = len(rng); n > 0; --n) {
      const int c = coin(rng);
      if (c == 0) {
        ids.push_back(byte(rng));
      } else if (c == 1) {
        ids.push_back(256);
      } else {
        char32_t cp = cp_dist(rng);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = U'\u00e9';
        std::string s;
        append_utf8(s, cp);
        for (char ch : s) ids.push_back(uint8_t(ch));
      }
    }
    IncrementalDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = dec.push(id);
      ASSERT_TRUE(utf8_valid(chunk));
      streamed += chunk;
    }
    streamed += dec.flush();
    ASSERT_EQ(streamed, tok.decode(ids, /*skip_special=*/true));
  }
}

// SentencePiece: the leading space of the first piece is dropped, as decode() does.
TEST(IncrementalDecoder, SentencePieceLeadingSpace) {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kSentencePieceBpe;
  spec.tokens = {"<unk>", "<s>", "\xE2\x96\x81hi", "\xE2\x96\x81there", "<0xC3>", "<0xA9>"};
  spec.token_types = {kTokenUnknown, kTokenControl, kTokenNormal,
                      kTokenNormal,  kTokenByte,    kTokenByte};
  spec.add_space_prefix = true;
  const Tokenizer tok = Tokenizer::from_spec(spec);
  const Ids ids{1, 2, 3, 4, 5};
  IncrementalDecoder dec(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += dec.push(id);
  streamed += dec.flush();
  EXPECT_EQ(streamed, "hi there\xC3\xA9");
  EXPECT_EQ(tok.decode(ids, true), streamed);
}

}  // namespace
}  // namespace tessera::tokenizer
