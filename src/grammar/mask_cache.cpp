// CompiledGrammar: the per-stack-top mask cache (see matcher.h). A fill walks the vocabulary trie
// once from the key's frames set on a sentinel: a token whose bytes are all read inside those
// frames is accepted whatever lies below; one that runs out of them mid-token is uncertain; the
// rest are rejected. The cache is the only mutable state and is guarded by mu_.
#include <algorithm>

#include "pda.h"
#include "tessera/core/error.h"
#include "tessera/grammar/matcher.h"

namespace tessera::grammar {

CompiledGrammar::CompiledGrammar(Grammar grammar, std::shared_ptr<const Vocabulary> vocab,
                                 const MatcherLimits& limits)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), limits_(limits) {
  if (!vocab_) fail(ErrorCode::kInvalidArgument, "CompiledGrammar needs a vocabulary");
}

size_t CompiledGrammar::cache_size() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

std::shared_ptr<const MaskEntry> CompiledGrammar::entry(const std::vector<uint32_t>& key) const {
  std::lock_guard lock(mu_);
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  auto e = std::make_shared<const MaskEntry>(compute(key));
  if (cache_.size() < limits_.max_cache_entries) cache_.emplace(key, e);
  return e;
}

MaskEntry CompiledGrammar::compute(const std::vector<uint32_t>& key) const {
  const Vocabulary& v = *vocab_;
  const auto& trie = v.trie();
  const auto& order = v.trie_tokens();
  MaskEntry out;
  out.accepted.assign(v.mask_words(), 0);
  auto accept_range = [&](uint32_t lo, uint32_t hi) {
    for (uint32_t i = lo; i < hi; ++i) {
      auto t = static_cast<uint32_t>(order[i]);
      out.accepted[t >> 6] |= uint64_t{1} << (t & 63);
    }
  };
  auto uncertain_range = [&](uint32_t lo, uint32_t hi) {
    out.uncertain.insert(out.uncertain.end(), order.begin() + lo, order.begin() + hi);
  };

  StackPool pool;
  Pda pda(grammar_, pool, limits_.max_stacks);
  int32_t s = kSentinel;
  for (auto it = key.rbegin(); it != key.rend(); ++it) s = pool.get(s, *it);

  struct Level {
    std::vector<int32_t> live;  // stacks still inside the key's frames
    bool uncertain = false;     // some path left the frames before this byte
    bool left = false;          // some path left the frames at exactly this byte
  };
  std::vector<Level> levels(v.max_depth() + 1);
  levels[0].live = {s};
  for (size_t i = 1; i < trie.size();) {
    const TrieNode& node = trie[i];
    Level& parent = levels[node.depth - 1];
    Level& cur = levels[node.depth];
    cur.uncertain = parent.uncertain || parent.left;
    pda.advance(parent.live, node.byte, cur.live);
    cur.left = !cur.live.empty() && cur.live.front() == kSentinel;
    if (cur.left) cur.live.erase(cur.live.begin());
    if (!cur.live.empty() || cur.left)
      accept_range(node.tokens_begin, node.tokens_end);
    else if (cur.uncertain)
      uncertain_range(node.tokens_begin, node.tokens_end);
    if (cur.live.empty()) {
      // Nothing below can be read inside the frames: descendants depend on the context if a path
      // left them on the way here, else they are rejected.
      if (cur.uncertain || cur.left) uncertain_range(node.tokens_end, node.subtree_end);
      i = node.next;
    } else {
      ++i;
    }
  }
  std::sort(out.uncertain.begin(), out.uncertain.end());
  return out;
}

}  // namespace tessera::grammar
