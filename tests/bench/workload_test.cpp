// Workloads: synthetic prompts re-tokenize to the asked length on the target's tokenizer (a small
// byte-level BPE built here), shared prefixes, and the ShareGPT reader's choices and filters.
#include "tessera/bench/workload.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "tessera/core/error.h"
#include "tessera/tokenizer/unicode.h"

namespace tessera::bench {
namespace {

using tokenizer::Tokenizer;
using tokenizer::TokenizerSpec;

// The 256 byte symbols plus whole words " cat", " dog", ... each reachable by left-to-right merges
// (" c" -> " ca" -> " cat"), so a prompt of N words is N tokens unless merges cross words.
Tokenizer word_tokenizer() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::kByteLevelBpe;
  spec.pre = "gpt2";
  for (int b = 0; b < 256; ++b) {
    std::string t;
    tokenizer::append_utf8(t, tokenizer::byte_to_codepoint(uint8_t(b)));
    spec.tokens.push_back(t);
  }
  std::set<std::string> have(spec.tokens.begin(), spec.tokens.end());
  const char* words[] = {
      "cat",     "dog",     "tree",    "river",   "stone",   "light",   "paper",   "music",
      "house",   "garden",  "window",  "yellow",  "purple",  "orange",  "silver",  "bridge",
      "forest",  "castle",  "rocket",  "planet",  "pencil",  "butter",  "candle",  "mirror",
      "violin",  "turtle",  "banana",  "coffee",  "winter",  "summer",  "autumn",  "spring",
      "engine",  "island",  "desert",  "valley",  "harbor",  "meadow",  "canyon",  "glacier",
      "thunder", "lantern", "compass", "feather", "blanket", "kitchen", "library", "teacher",
      "captain", "dolphin", "giraffe", "penguin", "diamond", "crystal", "galaxy",  "comet",
      "anchor",  "saddle",  "basket",  "button",  "helmet",  "jacket",  "ladder",  "magnet",
      "needle",  "pepper"};
  const std::string space = "\xC4\xA0";  // Ġ
  for (const char* w : words) {
    std::string cur = space;
    for (const char* c = w; *c; ++c) {
      const std::string next = cur + *c;
      if (!have.contains(next)) {
        spec.merges.push_back(cur + " " + std::string(1, *c));
        spec.tokens.push_back(next);
        have.insert(next);
      }
      cur = next;
    }
  }
  return Tokenizer::from_spec(spec);
}

TEST(BenchWorkload, SyntheticPromptsHaveTheAskedLength) {
  const Tokenizer tok = word_tokenizer();
  PromptBuilder pb(&tok);
  ASSERT_TRUE(pb.exact());
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> len(1, 400);
  for (int i = 0; i < 30; ++i) {
    const int64_t n = len(rng);
    const std::string text = pb.text(n, rng);
    const auto ids = tok.encode(text, {.add_special = false, .parse_special = false});
    EXPECT_NEAR(double(ids.size()), double(n), 1.0) << text;
    EXPECT_EQ(pb.count(text), int64_t(ids.size()));
  }
}

TEST(BenchWorkload, WithoutATokenizerUsesOneWordPerToken) {
  PromptBuilder pb(nullptr);
  std::mt19937_64 rng(std::random_device{}());
  const std::string t = pb.text(57, rng);
  EXPECT_EQ(std::count(t.begin(), t.end(), ' ') + 1, 57);
  EXPECT_FALSE(pb.exact());
}

TEST(BenchWorkload, SyntheticIsSeededAndSharesPrefixes) {
  const Tokenizer tok = word_tokenizer();
  PromptBuilder pb(&tok);
  const uint64_t seed = std::random_device{}();
  SyntheticParams p{.num_requests = 6,
                    .input_len = 40,
                    .output_len = 20,
                    .range_ratio = 0.5,
                    .seed = seed,
                    .prefix_len = 100,
                    .num_prefixes = 2};
  const auto a = make_synthetic(p, pb), b = make_synthetic(p, pb);
  ASSERT_EQ(a.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].system_prompt, a[i % 2].system_prompt);
    EXPECT_EQ(a[i].input_tokens, pb.count(a[i].system_prompt) + pb.count(a[i].prompt));
    EXPECT_NEAR(double(pb.count(a[i].system_prompt)), 100.0, 1.0);
    EXPECT_GE(a[i].output_tokens, 10);
    EXPECT_LE(a[i].output_tokens, 30);
  }
  EXPECT_NE(a[0].system_prompt, a[1].system_prompt);
  EXPECT_NE(a[0].prompt, a[2].prompt);
  p.seed = seed + 1;
  EXPECT_NE(make_synthetic(p, pb)[0].prompt, a[0].prompt);
}

TEST(BenchWorkload, ReadsShareGpt) {
  const Tokenizer tok = word_tokenizer();
  PromptBuilder pb(&tok);
  nlohmann::json data = nlohmann::json::array();
  const auto conv = [](const std::string& q, const std::string& a) {
    return nlohmann::json{
        {"id", "x"},
        {"conversations", {{{"from", "human"}, {"value", q}}, {{"from", "gpt"}, {"value", a}}}}};
  };
  for (int i = 0; i < 8; ++i)
    data.push_back(conv("cat dog tree river " + std::to_string(i),
                        std::string(" stone light paper music house")));
  data.push_back(conv("cat", "too short a prompt"));  // filtered: prompt < 4 tokens
  data.push_back({{"conversations", {{{"from", "human"}, {"value", "alone"}}}}});  // no reply
  data.push_back("not an object");
  const auto path = std::filesystem::temp_directory_path() /
                    ("bench_sharegpt_" + std::to_string(std::random_device{}()) + ".json");
  std::ofstream(path) << data.dump();
  auto specs = load_sharegpt(path.string(), {.num_requests = 5, .seed = 3}, pb);
  ASSERT_EQ(specs.size(), 5u);
  std::set<std::string> prompts;
  for (const auto& s : specs) {
    EXPECT_EQ(s.prompt.rfind("cat dog tree river ", 0), 0u);
    EXPECT_EQ(s.input_tokens, pb.count(s.prompt));
    EXPECT_EQ(s.output_tokens, 5);
    prompts.insert(s.prompt);
  }
  EXPECT_EQ(prompts.size(), 5u);
  const auto again = load_sharegpt(path.string(), {.num_requests = 5, .seed = 3}, pb);
  EXPECT_EQ(again[0].prompt, specs[0].prompt);
  specs = load_sharegpt(path.string(), {.num_requests = 0, .seed = 3, .output_len = 33}, pb);
  EXPECT_EQ(specs.size(), 8u);
  EXPECT_EQ(specs[0].output_tokens, 33);
  std::ofstream(path) << "[]";
  EXPECT_THROW(load_sharegpt(path.string(), {.num_requests = 1}, pb), Error);
  std::filesystem::remove(path);
  EXPECT_THROW(load_sharegpt(path.string(), {.num_requests = 1}, pb), Error);
}

}  // namespace
}  // namespace tessera::bench
