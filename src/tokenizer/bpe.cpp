// BPE merging for one pre-tokenized word: byte-level (merge ranks over GPT-2 byte symbols) and
// SentencePiece style (UTF-8 character symbols, merge by rank when merges are known, else by the
// highest score of the merged token), with byte fallback. Results of short words are cached.
#include <queue>

#include "tessera/tokenizer/unicode.h"
#include "tokenizer_impl.h"

namespace tessera::tokenizer {
namespace {

constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kMaxCacheEntries = 1 << 16;

struct Symbol {
  size_t start = 0, len = 0;  // bytes of the word
  int32_t id = -1;            // token of exactly these bytes, -1 if none
  int32_t prev = -1, next = -1;
};

struct Candidate {
  double priority;  // lower merges first
  int32_t left, right;
  size_t len;      // combined length when queued; a mismatch means the entry is stale
  int32_t merged;  // token id of the result
  bool operator>(const Candidate& o) const {
    return priority != o.priority ? priority > o.priority : left > o.left;
  }
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Generic merge loop; `find` returns false or fills (priority, merged id) for adjacent symbols.
template <typename Find>
void merge_symbols(std::vector<Symbol>& sym, Find&& find) {
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto try_push = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    double prio;
    int32_t merged;
    if (find(sym[l], sym[r], prio, merged))
      queue.push({prio, l, r, sym[l].len + sym[r].len, merged});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) try_push(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
    l.len += r.len;
    l.id = c.merged;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    try_push(l.prev, c.left);
    try_push(c.left, l.next);
  }
}

}  // namespace

void Tokenizer::Impl::encode_byte_level_word(std::string_view word,
                                             std::vector<int32_t>& out) const {
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mu);
    if (auto it = cache.find(std::string(word)); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  if (spec.ignore_merges) {
    if (auto it = token_to_id.find(bytes_to_unicode(word)); it != token_to_id.end()) {
      ids.push_back(it->second);
    }
  }
  if (ids.empty()) {
    std::vector<Symbol> sym(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      sym[i] = {i, 1, byte_token[uint8_t(word[i])], int32_t(i) - 1,
                i + 1 < word.size() ? int32_t(i + 1) : -1};
    }
    merge_symbols(sym, [&](const Symbol& a, const Symbol& b, double& prio, int32_t& merged) {
      if (a.id < 0 || b.id < 0) return false;
      auto it = merges.find(pair_key(a.id, b.id));
      if (it == merges.end()) return false;
      prio = it->second.first;
      merged = it->second.second;
      return true;
    });
    for (const Symbol& s : sym) {
      if (s.len == 0) continue;
      if (s.id >= 0) {
        ids.push_back(s.id);
      } else if (spec.unk_id >= 0) {  // a byte missing from the vocabulary
        ids.push_back(spec.unk_id);
      }
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(cache_mu);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(word), std::move(ids));
  }
}

void Tokenizer::Impl::encode_spm_word(std::string_view word, std::vector<int32_t>& out) const {
  const auto lookup = [&](std::string_view s) {
    auto it = token_to_id.find(std::string(s));
    return it == token_to_id.end() ? -1 : it->second;
  };
  if (spec.ignore_merges) {
    if (int32_t id = lookup(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> sym;
  for (size_t pos = 0; pos < word.size();) {
    const int n = utf8_sequence(word, pos);
    const size_t len = n > 0 ? size_t(n) : n == 0 ? word.size() - pos : size_t(-n);
    const int32_t idx = int32_t(sym.size());
    sym.push_back({pos, len, lookup(word.substr(pos, len)), idx - 1, -1});
    if (idx > 0) sym[idx - 1].next = idx;
    pos += len;
  }
  const bool by_rank = !merges.empty();
  merge_symbols(sym, [&](const Symbol& a, const Symbol& b, double& prio, int32_t& merged) {
    if (by_rank) {
      if (a.id < 0 || b.id < 0) return false;
      auto it = merges.find(pair_key(a.id, b.id));
      if (it == merges.end()) return false;
      prio = it->second.first;
      merged = it->second.second;
      return true;
    }
    merged = lookup(word.substr(a.start, a.len + b.len));
    if (merged < 0) return false;
    prio = merged < int32_t(spec.scores.size()) ? -double(spec.scores[merged]) : 0.0;
    return true;
  });
  int32_t last_unk_at = -2;
  for (const Symbol& s : sym) {
    if (s.len == 0) continue;
    if (s.id >= 0) {
      out.push_back(s.id);
    } else if (spec.byte_fallback && have_all_byte_tokens) {
      for (size_t i = 0; i < s.len; ++i) out.push_back(byte_token[uint8_t(word[s.start + i])]);
    } else if (spec.unk_id >= 0) {
      // Consecutive unknown characters become one <unk> (HF fuse_unk, SentencePiece).
      if (last_unk_at != int32_t(out.size()) - 1 || out.empty()) out.push_back(spec.unk_id);
      last_unk_at = int32_t(out.size()) - 1;
    }
  }
}

void Tokenizer::Impl::encode_text(std::string_view text, bool first_fragment,
                                  std::vector<int32_t>& out) const {
  std::string buf;
  std::string_view src = text;
  const bool spm = spec.kind == TokenizerSpec::Kind::kSentencePieceBpe;
  if (spm) {
    if (spec.add_space_prefix && (spec.space_prefix_every_fragment || first_fragment)) {
      buf = "\xE2\x96\x81";
    }
    for (char c : text) {
      if (c == ' ') {
        buf += "\xE2\x96\x81";
      } else {
        buf.push_back(c);
      }
    }
    src = buf;
  } else if (spec.byte_level_add_prefix_space && !text.empty() && text[0] != ' ') {
    buf = " ";
    buf.append(text);
    src = buf;
  }
  std::vector<std::pair<size_t, size_t>> pieces{{0, src.size()}}, next;
  for (const auto& re : pre) {
    next.clear();
    for (auto [off, len] : pieces) re->split(src, off, len, next);
    pieces.swap(next);
  }
  for (auto [off, len] : pieces) {
    if (spm) {
      encode_spm_word(src.substr(off, len), out);
    } else {
      encode_byte_level_word(src.substr(off, len), out);
    }
  }
}

}  // namespace tessera::tokenizer
