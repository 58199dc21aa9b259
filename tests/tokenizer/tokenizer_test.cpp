// Unit tests on hand-made vocabularies: byte map, byte-level BPE merges, SentencePiece byte
// fallback, special-token splitting, decoding.
#include "tessera/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <thread>

#include "tessera/core/error.h"
#include "tessera/tokenizer/unicode.h"

namespace tessera::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

TEST(ByteMap, MatchesGpt2Table) {
  EXPECT_EQ(byte_to_codepoint(' '), U'\u0120');
  EXPECT_EQ(byte_to_codepoint('\n'), U'\u010A');
  EXPECT_EQ(byte_to_codepoint('\t'), U'\u0109');
  EXPECT_EQ(byte_to_codepoint(0x7F), U'\u0121');
  EXPECT_EQ(byte_to_codepoint(0xA0), U'\u0142');
  EXPECT_EQ(byte_to_codepoint(0xAD), U'\u0143');
  EXPECT_EQ(byte_to_codepoint('A'), U'A');
  EXPECT_EQ(byte_to_codepoint(0xFF), U'\u00FF');
  for (int b = 0; b < 256; ++b) {
    auto back = codepoint_to_byte(byte_to_codepoint(uint8_t(b)));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, b);
  }
  EXPECT_FALSE(codepoint_to_byte(U' ').has_value());  // 0x20 is not printable in the map
  EXPECT_FALSE(codepoint_to_byte(U'\u0144').has_value());
  EXPECT_EQ(bytes_to_unicode("a b\n"),
            "a\xC4\xA0"
            "b\xC4\x8A");
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_lossy("ok"), "ok");
  EXPECT_EQ(utf8_lossy("a\xFF"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(utf8_lossy("\xE2\x82"), "\xEF\xBF\xBD");  // truncated tail: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xE2\x82"
                       "A"),
            "\xEF\xBF\xBD"
            "A");  // broken sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_TRUE(utf8_valid("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8_valid("\xC0\x80"));  // overlong
  // Random valid code points round-trip through append_utf8 / utf8_sequence / utf8_decode_at.
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<uint32_t> dist(0, 0x10FFFF);
  for (int i = 0; i < 2000; ++i) {
    char32_t cp = dist(rng);
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    append_utf8(s, cp);
    ASSERT_EQ(utf8_sequence(s, 0), int(s.size()));
    ASSERT_EQ(utf8_decode_at(s, 0, int(s.size())), cp);
  }
}

// Byte-level vocabulary: the 256 byte symbols, then merged tokens.
TokenizerSpec tiny_byte_level() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kByteLevelBpe;
  spec.pre = "gpt2";
  for (int b = 0; b < 256; ++b) {
    std::string t;
    append_utf8(t, byte_to_codepoint(uint8_t(b)));
    spec.tokens.push_back(t);
  }
  // ids 256.. : "he", "ll", "hell", "hello", "Ġw", "Ġwo", "<|eot|>"
  for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0w", "\xC4\xA0wo", "<|eot|>"}) {
    spec.tokens.push_back(t);
  }
  spec.merges = {"l l", "h e", "he ll", "hell o", "\xC4\xA0 w", "\xC4\xA0w o"};
  spec.token_types.assign(spec.tokens.size(), kTokenNormal);
  spec.token_types.back() = kTokenControl;
  spec.eos_id = int32_t(spec.tokens.size()) - 1;
  return spec;
}

TEST(ByteLevelBpe, MergesByRank) {
  const Tokenizer tok = Tokenizer::from_spec(tiny_byte_level());
  EXPECT_EQ(tok.encode("hello"), (Ids{259}));
  EXPECT_EQ(tok.encode("hell"), (Ids{258}));
  EXPECT_EQ(tok.encode("help"), (Ids{256, 'l', 'p'}));
  // " wo" merges "Ġ w" then "Ġw o"; "rld" stays bytes.
  EXPECT_EQ(tok.encode("hello world"), (Ids{259, 261, 'r', 'l', 'd'}));
  EXPECT_EQ(tok.encode("\n"), (Ids{'\n'}));
  // Raw bytes that are not UTF-8 still encode and decode.
  EXPECT_EQ(tok.encode("\xFF"), (Ids{0xFF}));
  EXPECT_EQ(tok.token_bytes(0xFF), "\xFF");
  EXPECT_EQ(tok.decode(Ids{0xFF}), "\xEF\xBF\xBD");
}

TEST(ByteLevelBpe, RandomBytesRoundTrip) {
  const Tokenizer tok = Tokenizer::from_spec(tiny_byte_level());
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    for (int n = len(rng); n > 0; --n) s.push_back(char(byte(rng)));
    const Ids ids = tok.encode(s, {.add_special = false, .parse_special = false});
    std::string back;
    for (int32_t id : ids) back += tok.token_bytes(id);
    ASSERT_EQ(back, s);
  }
}

TEST(ByteLevelBpe, ConcurrentEncodeSharesCacheSafely) {
  const Tokenizer tok = Tokenizer::from_spec(tiny_byte_level());
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(0, 5);
  const char* words[] = {"hello", " world", " hell", "help", "\xC3\xA9", "<|eot|>"};
  std::vector<std::string> texts(64);
  for (auto& t : texts) {
    for (int k = 0; k < 20; ++k) t += words[pick(rng)];
  }
  std::vector<Ids> want;
  {
    const Tokenizer fresh = Tokenizer::from_spec(tiny_byte_level());  // cold cache
    for (const auto& t : texts) want.push_back(fresh.encode(t));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (tok.encode(texts[i]) != want[i]) ++mismatches[th];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(SpecialTokens, SplitLeftmostLongestAndOptional) {
  TokenizerSpec spec = tiny_byte_level();
  spec.tokens.push_back("<|eot|>x");  // longer token sharing a prefix
  spec.token_types.push_back(kTokenUserDefined);
  const Tokenizer tok = Tokenizer::from_spec(spec);
  const int32_t eot = 262, eotx = 263;
  EXPECT_EQ(tok.encode("he<|eot|>he"), (Ids{256, eot, 256}));
  EXPECT_EQ(tok.encode("<|eot|>x<|eot|>"), (Ids{eotx, eot}));
  // Without parse_special the control token is text, the user-defined one is still split out.
  const Ids plain = tok.encode("<|eot|>", {.add_special = true, .parse_special = false});
  EXPECT_EQ(plain.size(), 7u);
  EXPECT_EQ(tok.encode("<|eot|>x", {.add_special = true, .parse_special = false}), (Ids{eotx}));
  EXPECT_TRUE(tok.is_special(eot));
  EXPECT_FALSE(tok.is_special(eotx));
  EXPECT_EQ(tok.decode(Ids{256, eot, 256}), "he<|eot|>he");
  EXPECT_EQ(tok.decode(Ids{256, eot, 256}, /*skip_special=*/true), "hehe");
  EXPECT_EQ(tok.stop_ids(), (Ids{eot}));
  EXPECT_EQ(tok.eos_token(), "<|eot|>");
  EXPECT_EQ(tok.token_id("hello"), 259);
  EXPECT_FALSE(tok.token_id("nope").has_value());
}

TEST(SpecialTokens, LstripRstrip) {
  TokenizerSpec spec = tiny_byte_level();
  spec.added_tokens.push_back({262, "<|eot|>", true, /*lstrip=*/true, /*rstrip=*/true});
  const Tokenizer tok = Tokenizer::from_spec(spec);
  EXPECT_EQ(tok.encode("he  <|eot|> \n he"), (Ids{256, 262, 256}));
}

// SentencePiece style: scores decide merges; unknown characters fall back to <0xNN>.
TokenizerSpec tiny_spm() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kSentencePieceBpe;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.token_types = {kTokenUnknown, kTokenControl, kTokenControl};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    spec.tokens.push_back(buf);
    spec.token_types.push_back(kTokenByte);
  }
  // 259.. : ▁ h e l o ▁h he ll llo ▁he ▁hello
  for (const char* t : {"\xE2\x96\x81", "h", "e", "l", "o", "\xE2\x96\x81h", "he", "ll", "llo",
                        "\xE2\x96\x81he", "\xE2\x96\x81hello"}) {
    spec.tokens.push_back(t);
    spec.token_types.push_back(kTokenNormal);
  }
  spec.scores.assign(spec.tokens.size(), 0.0f);
  for (size_t i = 259; i < spec.tokens.size(); ++i) spec.scores[i] = -float(i);
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.unk_id = 0;
  spec.add_bos = true;
  spec.add_space_prefix = true;
  return spec;
}

TEST(SentencePieceBpe, ScoresAndByteFallback) {
  const Tokenizer tok = Tokenizer::from_spec(tiny_spm());
  // Merges go by the score of the merged token: ▁h(-264), ll(-266), llo(-267), ▁he(-268), then
  // ▁hello(-269); "he"(-265) never forms because ▁h took the h first.
  EXPECT_EQ(tok.encode("hello"), (Ids{1, 269}));
  EXPECT_EQ(tok.decode(Ids{1, 269}, true), "hello");
  // 'é' = C3 A9 is not in the vocab: byte fallback.
  EXPECT_EQ(tok.encode("hé", {.add_special = false, .parse_special = true}),
            (Ids{264, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok.decode(Ids{264, 3 + 0xC3, 3 + 0xA9}), "hé");
  // Spaces become ▁ and the first leading space is dropped again on decode.
  const Ids ids = tok.encode(" he  llo", {.add_special = false, .parse_special = true});
  EXPECT_EQ(tok.decode(ids), " he  llo");
  // Special tokens inside text; the text after them gets a space prefix (llama.cpp).
  EXPECT_EQ(tok.encode("he</s>he", {.add_special = false, .parse_special = true}),
            (Ids{268, 2, 268}));
}

TEST(SentencePieceBpe, UnknownWithoutByteTokens) {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kSentencePieceBpe;
  spec.tokens = {"<unk>", "\xE2\x96\x81", "a"};
  spec.token_types = {kTokenUnknown, kTokenNormal, kTokenNormal};
  spec.unk_id = 0;
  const Tokenizer tok = Tokenizer::from_spec(spec);
  EXPECT_EQ(tok.encode("a\xE4\xB8\xAD\xE6\x96\x87"
                       "a"),
            (Ids{1, 2, 0, 2}));  // one fused <unk>
}

TEST(Spec, RejectsInconsistentInput) {
  TokenizerSpec spec = tiny_byte_level();
  spec.token_types.pop_back();
  EXPECT_THROW(Tokenizer::from_spec(spec), Error);
  spec = tiny_byte_level();
  spec.eos_id = 100000;
  EXPECT_THROW(Tokenizer::from_spec(spec), Error);
  const Tokenizer tok = Tokenizer::from_spec(tiny_byte_level());
  EXPECT_THROW(tok.token_bytes(-1), Error);
  EXPECT_THROW(tok.token_bytes(tok.vocab_size()), Error);
  EXPECT_THROW(Tokenizer::from_hf_json("/nonexistent/tokenizer.json"), Error);
  // Valid JSON of the wrong shape is a typed error naming the file, not nlohmann's exception
  // (found by fuzz_hf_tokenizer).
  const std::string path = ::testing::TempDir() + "/shape_tokenizer.json";
  for (const char* doc : {"{}", "[]", R"({"model": 5})", R"({"model": {"vocab": [1]}})",
                          R"({"model": {"vocab": {"a": "x"}, "merges": [1]}})",
                          // A negative id wrote before the token table; a huge one allocated a
                          // table of holes.
                          R"({"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": -3, "content": "x"}]})",
                          R"({"model": {"vocab": {"a": 0, "b": 2000000000}}})",
                          R"({"model": {"vocab": {"a": 3.4e103}}})",
                          R"({"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 1e300, "content": "x"}]})"}) {
    std::ofstream(path) << doc;
    try {
      Tokenizer::from_hf_json(path);
      ADD_FAILURE() << doc << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << doc << ": " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << doc << ": escaped as " << e.what();
    }
  }
}

}  // namespace
}  // namespace tessera::tokenizer
