#include "tessera/bench/workload.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/core/error.h"

namespace tessera::bench {
namespace {

// Used only without a tokenizer: short, common words most BPE vocabularies hold whole.
constexpr const char* kCommonWords[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "that",  "for",   "it",    "as",
    "was",   "with",  "be",    "by",    "on",    "not",   "he",    "this",  "are",   "or",
    "his",   "from",  "at",    "which", "but",   "have",  "an",    "had",   "they",  "you",
    "were",  "their", "one",   "all",   "we",    "can",   "her",   "has",   "there", "been",
    "if",    "more",  "when",  "will",  "would", "who",   "so",    "no",    "time",  "people",
    "water", "world", "house", "light", "city",  "river", "music", "paper", "table", "garden"};

bool whole_word(const std::string& s) {
  if (s.size() < 3 || s[0] != ' ') return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; });
}

bool printable(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

PromptBuilder::PromptBuilder(const tokenizer::Tokenizer* tok) : tok_(tok) {
  if (!tok_) {
    for (const char* w : kCommonWords) words_.push_back(std::string(" ") + w);
    return;
  }
  // Whole words with a leading space re-tokenize to themselves far more often than fragments do.
  for (int32_t id = 0; id < tok_->vocab_size(); ++id) {
    if (tok_->is_special(id)) continue;
    std::string b = tok_->token_bytes(id);
    if (whole_word(b)) words_.push_back(std::move(b));
  }
  if (words_.size() < 64) {
    words_.clear();
    for (int32_t id = 0; id < tok_->vocab_size(); ++id) {
      if (tok_->is_special(id)) continue;
      std::string b = tok_->token_bytes(id);
      if (printable(b)) words_.push_back(std::move(b));
    }
  }
  if (words_.empty())
    fail(ErrorCode::kUnsupported, "the tokenizer has no printable tokens for prompts");
}

int64_t PromptBuilder::count(const std::string& text) const {
  if (!tok_) return int64_t((text.size() + 3) / 4);
  return int64_t(tok_->encode(text, {.add_special = false, .parse_special = false}).size());
}

std::string PromptBuilder::text(int64_t num_tokens, std::mt19937_64& rng) const {
  if (num_tokens <= 0) return "";
  std::uniform_int_distribution<size_t> pick(0, words_.size() - 1);
  std::vector<size_t> chosen;
  for (int64_t i = 0; i < num_tokens; ++i) chosen.push_back(pick(rng));
  auto render = [&] {
    std::string s;
    for (size_t w : chosen) s += words_[w];
    // No leading space: SentencePiece adds its own prefix, byte-level BPE then starts with a word.
    return s.substr(1);
  };
  std::string s = render();
  if (!tok_) return s;
  // Merges across word boundaries shorten the text and a first word without its space may split
  // into pieces; drop or add words until it fits.
  for (int iter = 0; iter < 16; ++iter) {
    const int64_t diff = count(s) - num_tokens;
    if (diff == 0 || (diff > 0 && chosen.size() == 1)) break;
    if (diff > 0) {
      chosen.resize(chosen.size() - std::min<size_t>(size_t(diff), chosen.size() - 1));
    } else {
      for (int64_t i = 0; i < -diff; ++i) chosen.push_back(pick(rng));
    }
    s = render();
  }
  // What whole words cannot fix (one word longer than the asked length): cut at a token.
  auto ids = tok_->encode(s, {.add_special = false, .parse_special = false});
  if (int64_t(ids.size()) > num_tokens + 1) {
    ids.resize(size_t(num_tokens));
    s = tok_->decode(ids);
  }
  return s;
}

std::vector<int64_t> sample_lengths(int64_t mean, double range_ratio, size_t n,
                                    std::mt19937_64& rng) {
  if (mean < 1) fail(ErrorCode::kInvalidArgument, "lengths must be >= 1, got ", mean);
  if (!(range_ratio >= 0 && range_ratio < 1))
    fail(ErrorCode::kInvalidArgument, "--range-ratio must be in [0, 1), got ", range_ratio);
  const int64_t lo = std::max<int64_t>(1, int64_t(std::floor(double(mean) * (1 - range_ratio))));
  const int64_t hi = std::max(lo, int64_t(std::floor(double(mean) * (1 + range_ratio))));
  std::uniform_int_distribution<int64_t> d(lo, hi);
  std::vector<int64_t> out(n);
  for (auto& x : out) x = d(rng);
  return out;
}

std::vector<RequestSpec> make_synthetic(const SyntheticParams& p, const PromptBuilder& pb) {
  std::mt19937_64 rng(p.seed);
  const auto in = sample_lengths(p.input_len, p.range_ratio, p.num_requests, rng);
  const auto out = sample_lengths(p.output_len, p.range_ratio, p.num_requests, rng);
  std::vector<std::string> prefixes;
  std::vector<int64_t> prefix_tokens;
  if (p.prefix_len > 0) {
    if (p.num_prefixes < 1) fail(ErrorCode::kInvalidArgument, "--num-prefixes must be >= 1");
    for (int64_t k = 0; k < p.num_prefixes; ++k) {
      prefixes.push_back(pb.text(p.prefix_len, rng));
      prefix_tokens.push_back(pb.exact() ? pb.count(prefixes.back()) : p.prefix_len);
    }
  }
  std::vector<RequestSpec> specs;
  for (size_t i = 0; i < p.num_requests; ++i) {
    RequestSpec s;
    s.prompt = pb.text(in[i], rng);
    s.input_tokens = pb.exact() ? pb.count(s.prompt) : in[i];
    if (!prefixes.empty()) {
      s.system_prompt = prefixes[i % prefixes.size()];
      s.input_tokens += prefix_tokens[i % prefixes.size()];
    }
    s.output_tokens = out[i];
    specs.push_back(std::move(s));
  }
  return specs;
}

std::vector<RequestSpec> load_sharegpt(const std::string& path, const ShareGptParams& p,
                                       const PromptBuilder& pb) {
  std::ifstream f(path);
  if (!f) fail(ErrorCode::kNotFound, "cannot read the dataset ", path);
  nlohmann::json data;
  try {
    data = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorruptFile, path, " is not valid JSON: ", e.what());
  }
  if (!data.is_array())
    fail(ErrorCode::kCorruptFile, path, " must hold a JSON list of conversations");
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& entry : data) {
    if (!entry.is_object() || !entry.contains("conversations")) continue;
    const auto& conv = entry["conversations"];
    if (!conv.is_array() || conv.size() < 2) continue;
    const auto text = [](const nlohmann::json& turn) -> std::string {
      if (!turn.is_object() || !turn.contains("value") || !turn["value"].is_string()) return "";
      return turn["value"].get<std::string>();
    };
    pairs.emplace_back(text(conv[0]), text(conv[1]));
  }
  std::mt19937_64 rng(p.seed);
  std::shuffle(pairs.begin(), pairs.end(), rng);
  std::vector<RequestSpec> specs;
  for (const auto& [prompt, reply] : pairs) {
    if (p.num_requests && specs.size() >= p.num_requests) break;
    const int64_t in = pb.count(prompt);
    const int64_t out = p.output_len > 0 ? p.output_len : pb.count(reply);
    if (in < p.min_len || out < p.min_len) continue;
    if (in > p.max_prompt_len || in + out > p.max_total_len) continue;
    specs.push_back({.prompt = prompt, .input_tokens = in, .output_tokens = out});
  }
  if (specs.empty())
    fail(ErrorCode::kInvalidArgument, path,
         " has no usable conversations (need a human turn and a ", "reply of ", p.min_len, "..",
         p.max_prompt_len, " tokens)");
  return specs;
}

}  // namespace tessera::bench
