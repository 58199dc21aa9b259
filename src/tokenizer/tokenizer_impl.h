// Internal state of a Tokenizer: vocabulary maps, the compiled pre-tokenizer, the added-token
// matcher and the word cache. Built once by build_impl(); only the cache changes afterwards.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/tokenizer/tokenizer.h"

namespace tessera::tokenizer {

// One compiled PCRE2 pattern (UTF + UCP). Splits a piece "isolated" style: matches and the gaps
// between them both become pieces, like HF Split(behavior=Isolated) and llama.cpp.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  // Appends the pieces of text[off, off+len) as (offset, length) pairs into `out`.
  void split(std::string_view text, size_t off, size_t len,
             std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

// Pre-tokenizer regexes for a GGUF tokenizer.ggml.pre name.
std::vector<std::string> regexes_for_pre(const std::string& pre);

// A piece of input: raw text or an already-known token id.
struct Fragment {
  int32_t id = -1;  // >= 0: a split-out added/special token
  size_t off = 0, len = 0;
};

// Finds added/special tokens in text, leftmost-longest (HF uses Aho-Corasick LeftmostLongest).
class SpecialMatcher {
 public:
  void add(const AddedToken& token);
  void finish();  // sorts candidates; call once after the last add()
  // Special tokens overlapping a `literal` range (sorted, disjoint) are left as text.
  std::vector<Fragment> split(std::string_view text, bool parse_special,
                              std::span<const std::pair<size_t, size_t>> literal = {}) const;
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<AddedToken> entries_;
  std::array<std::vector<int32_t>, 256> by_first_byte_;  // entry indices, longest first
};

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::unordered_map<std::string, int32_t> token_to_id;
  // (left id << 32 | right id) -> {rank, merged id}
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::array<int32_t, 256> byte_token{};  // byte-level: token of each byte; SPM: <0xNN> tokens
  bool have_all_byte_tokens = false;
  std::vector<std::unique_ptr<RegexSplitter>> pre;
  SpecialMatcher specials;
  std::vector<std::string> piece_bytes;  // token_bytes per id
  std::vector<uint8_t> special;          // is_special per id
  std::vector<int32_t> stop_ids;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void encode_text(std::string_view text, bool first_fragment, std::vector<int32_t>& out) const;
  void encode_byte_level_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_spm_word(std::string_view word, std::vector<int32_t>& out) const;
};

std::shared_ptr<Tokenizer::Impl> build_impl(TokenizerSpec spec);

}  // namespace tessera::tokenizer
