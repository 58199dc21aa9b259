// Parity with the Hugging Face `tokenizers` package: tests/python/tok_make_fixtures.py writes
// tokenizer.json files and the ids HF produced for a corpus of hard strings; here our Tokenizer
// (from that tokenizer.json, and for the default model also from the GGUF tokenizer fields) must
// produce the same ids and decoded text. Run by tests/python/test_tokenizer_hf.py, which sets
// TESSERA_TOK_FIXTURES; skipped when the fixtures are absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/tokenizer/detokenizer.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int32_t>;

// The fixture directory: $TESSERA_TOK_FIXTURES, else the one the pytest leaves in the build tree.
std::optional<fs::path> fixture_dir(bool env_only) {
  if (const char* env = std::getenv("TESSERA_TOK_FIXTURES"); env != nullptr && *env != '\0') {
    return fs::path(env);
  }
  if (env_only) return std::nullopt;
  fs::path dir = fs::path(TESSERA_BINARY_DIR) / "tok_fixtures";
  if (fs::exists(dir / "manifest.json")) return dir;
  return std::nullopt;
}

json load(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// Builds the TokenizerSpec the way a GGUF caller does, from the dumped tokenizer.ggml.* fields.
TokenizerSpec spec_from_dump(const json& j) {
  TokenizerSpec spec;
  spec.kind = j.at("kind") == "llama" ? TokenizerSpec::Kind::kSentencePieceBpe
                                      : TokenizerSpec::Kind::kByteLevelBpe;
  spec.pre = j.at("pre");
  spec.tokens = j.at("tokens").get<std::vector<std::string>>();
  spec.token_types = j.at("token_types").get<std::vector<int32_t>>();
  spec.merges = j.at("merges").get<std::vector<std::string>>();
  spec.bos_id = j.at("bos_id");
  spec.eos_id = j.at("eos_id");
  spec.unk_id = j.at("unk_id");
  spec.pad_id = j.at("pad_id");
  spec.add_bos = j.at("add_bos");
  spec.add_eos = j.at("add_eos");
  spec.add_space_prefix = j.at("add_space_prefix");
  spec.chat_template = j.at("chat_template");
  return spec;
}

void expect_cases(const Tokenizer& tok, const json& fixture, const std::string& label) {
  for (const json& c : fixture.at("cases")) {
    const std::string text = c.at("text");
    const Ids want = c.at("ids").get<Ids>();
    const Ids got = tok.encode(text);
    EXPECT_EQ(got, want) << label << " text: " << json(text).dump();
    EXPECT_EQ(tok.decode(want), c.at("decoded").get<std::string>()) << label << " " << text;
    EXPECT_EQ(tok.decode(want, true), c.at("decoded_skip").get<std::string>()) << label;
    if (c.at("round_trips").get<bool>()) {
      const Ids plain = tok.encode(text, {.add_special = false, .parse_special = true});
      EXPECT_EQ(tok.decode(plain), text) << label << " round trip";
    }
    // Streaming the same ids gives the same text as decoding them at once.
    IncrementalDecoder dec(tok, /*skip_special=*/true);
    std::string streamed;
    for (int32_t id : want) streamed += dec.push(id);
    streamed += dec.flush();
    EXPECT_EQ(streamed, c.at("decoded_skip").get<std::string>()) << label << " streamed";
  }
}

TEST(HfParity, TokenizerJsonMatchesHf) {
  const auto dir = fixture_dir(/*env_only=*/true);
  if (!dir) GTEST_SKIP() << "TESSERA_TOK_FIXTURES not set (run tests/python/test_tokenizer_hf.py)";
  const json manifest = load(*dir / "manifest.json");
  ASSERT_GE(manifest.at("fixtures").size(), 3u);
  for (const json& f : manifest.at("fixtures")) {
    SCOPED_TRACE(f.at("name").get<std::string>());
    const Tokenizer tok = Tokenizer::from_hf_json((*dir / f.at("tokenizer_json")).string(),
                                                  (*dir / f.at("tokenizer_config")).string());
    expect_cases(tok, f, f.at("name").get<std::string>() + "/tokenizer.json");
  }
}

TEST(HfParity, GgufSpecMatchesHf) {
  const auto dir = fixture_dir(/*env_only=*/true);
  if (!dir) GTEST_SKIP() << "TESSERA_TOK_FIXTURES not set (run tests/python/test_tokenizer_hf.py)";
  const json manifest = load(*dir / "manifest.json");
  int checked = 0;
  for (const json& f : manifest.at("fixtures")) {
    if (!f.contains("spec_json")) continue;
    const Tokenizer tok = Tokenizer::from_spec(spec_from_dump(load(*dir / f.at("spec_json"))));
    expect_cases(tok, f, f.at("name").get<std::string>() + "/gguf");
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no GGUF fixture (default model missing)";
}

// The default model's tokenizer built from its GGUF fields: check vectors and metadata.
TEST(DefaultModel, HelloWorld) {
  const auto dir = fixture_dir(/*env_only=*/false);
  if (!dir || !fs::exists(*dir / "smollm_spec.json")) GTEST_SKIP() << "no smollm_spec.json";
  const Tokenizer tok = Tokenizer::from_spec(spec_from_dump(load(*dir / "smollm_spec.json")));
  EXPECT_EQ(tok.encode("Hello world! 123"), (Ids{19556, 905, 17, 216, 33, 34, 35}));
  EXPECT_EQ(tok.encode("\n"), (Ids{198}));
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.eos_token(), "<|im_end|>");
  EXPECT_EQ(tok.encode("<|im_start|>user\nhi<|im_end|>"), (Ids{1, 4093, 198, 6004, 2}));
  const Ids& stops = tok.stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), 2), stops.end());
  EXPECT_NE(std::find(stops.begin(), stops.end(), 0), stops.end());  // <|endoftext|>
  EXPECT_FALSE(tok.chat_template().empty());
}

}  // namespace
}  // namespace tessera::tokenizer
