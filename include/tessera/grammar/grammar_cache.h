// GrammarCache: compiled grammars by source text for one vocabulary, so that requests with the
// same schema share one CompiledGrammar and its warm mask cache. Least recently used entries go
// first past the capacity. Owned by one worker; not thread-safe (the worker samples on one thread).
#pragma once

#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "tessera/grammar/matcher.h"

namespace tessera::grammar {

class GrammarCache {
 public:
  GrammarCache(std::shared_ptr<const Vocabulary> vocab, size_t capacity = 64)
      : vocab_(std::move(vocab)), capacity_(capacity) {}

  // The compiled grammar for `gbnf` (parsed on a miss; throws as Grammar::parse does).
  std::shared_ptr<const CompiledGrammar> get(const std::string& gbnf);
  size_t size() const { return index_.size(); }
  const Vocabulary& vocab() const { return *vocab_; }

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const CompiledGrammar>>;
  std::shared_ptr<const Vocabulary> vocab_;
  size_t capacity_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace tessera::grammar
