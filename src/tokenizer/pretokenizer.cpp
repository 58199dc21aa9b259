// Pre-tokenization: PCRE2 regex splitting and added-token splitting.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tokenizer_impl.h"

namespace tessera::tokenizer {
namespace {

// HF ByteLevel's regex: GPT-2's plus a final \s+ (llama.cpp leaves such whitespace as a gap piece,
// which splits the same way).
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace

std::vector<std::string> regexes_for_pre(const std::string& pre) {
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r") {
    return {R"(\p{N})", kGpt2};
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "falcon3" ||
      pre == "smaug-bpe") {
    return {kLlama3};
  }
  if (pre == "qwen2" || pre == "qwen2.5" || pre == "qwen-2.5" || pre == "deepseek-r1-qwen") {
    return {kQwen2};
  }
  if (!(pre == "gpt2" || pre == "default" || pre.empty() || pre == "gpt-2")) {
    TESSERA_LOG_WARN("tokenizer: unknown pre-tokenizer '{}', using the GPT-2 regex", pre);
  }
  return {kGpt2};
}

RegexSplitter::RegexSplitter(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail(ErrorCode::kInvalidArgument, "tokenizer regex '", pattern, "' at ", err_off, ": ",
         reinterpret_cast<const char*>(msg));
  }
  // JIT makes splitting several times faster; the interpreter is a correct fallback.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(as_code(code_)); }

void RegexSplitter::split(std::string_view text, size_t off, size_t len,
                          std::vector<std::pair<size_t, size_t>>& out) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(as_code(code_), nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + off);
  size_t start = 0, last = 0;
  while (start < len) {
    const int rc = pcre2_match(as_code(code_), subject, len, start, 0, md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH (or a resource error: keep the rest whole)
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t m0 = ov[0], m1 = ov[1];
    if (m1 == m0) {  // empty match: none of our patterns do this, but never loop forever
      start = m0 + 1;
      continue;
    }
    if (m0 > last) out.emplace_back(off + last, m0 - last);
    out.emplace_back(off + m0, m1 - m0);
    last = start = m1;
  }
  if (last < len) out.emplace_back(off + last, len - last);
  pcre2_match_data_free(md);
}

void SpecialMatcher::add(const AddedToken& token) {
  if (token.content.empty() || token.id < 0) return;
  for (const auto& e : entries_) {
    if (e.content == token.content) return;
  }
  entries_.push_back(token);
}

void SpecialMatcher::finish() {
  for (auto& b : by_first_byte_) b.clear();
  for (size_t i = 0; i < entries_.size(); ++i) {
    by_first_byte_[uint8_t(entries_[i].content[0])].push_back(int32_t(i));
  }
  for (auto& b : by_first_byte_) {
    std::stable_sort(b.begin(), b.end(), [&](int32_t x, int32_t y) {
      return entries_[x].content.size() > entries_[y].content.size();
    });
  }
}

std::vector<Fragment> SpecialMatcher::split(
    std::string_view text, bool parse_special,
    std::span<const std::pair<size_t, size_t>> literal) const {
  std::vector<Fragment> frags;
  size_t text_start = 0, pos = 0;
  size_t lit = 0;  // the first literal range that ends after pos
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    while (lit < literal.size() && literal[lit].second <= pos) ++lit;
    for (int32_t idx : by_first_byte_[uint8_t(text[pos])]) {
      const AddedToken& e = entries_[idx];
      if (e.special && !parse_special) continue;
      if (e.special && lit < literal.size() && literal[lit].first < pos + e.content.size()) {
        continue;  // overlaps untrusted text
      }
      if (text.compare(pos, e.content.size(), e.content) == 0) {
        hit = &e;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t text_end = pos;
    if (hit->lstrip) {
      while (text_end > text_start && is_space(uint8_t(text[text_end - 1]))) --text_end;
    }
    if (text_end > text_start) frags.push_back({-1, text_start, text_end - text_start});
    frags.push_back({hit->id, pos, hit->content.size()});
    pos += hit->content.size();
    if (hit->rstrip) {
      while (pos < text.size() && is_space(uint8_t(text[pos]))) ++pos;
    }
    text_start = pos;
  }
  if (text_start < text.size()) frags.push_back({-1, text_start, text.size() - text_start});
  return frags;
}

}  // namespace tessera::tokenizer
