// GrammarCache (see grammar_cache.h).
#include "tessera/grammar/grammar_cache.h"

namespace tessera::grammar {

std::shared_ptr<const CompiledGrammar> GrammarCache::get(const std::string& gbnf) {
  if (auto it = index_.find(gbnf); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  auto compiled = std::make_shared<const CompiledGrammar>(Grammar::parse(gbnf), vocab_);
  lru_.emplace_front(gbnf, compiled);
  index_.emplace(gbnf, lru_.begin());
  while (index_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return compiled;
}

}  // namespace tessera::grammar
