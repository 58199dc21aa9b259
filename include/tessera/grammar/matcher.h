// Grammar-constrained decoding for one vocabulary. CompiledGrammar pairs a Grammar with a
// Vocabulary and owns the mask cache (the xgrammar idea): for the top frames of a parse stack, the
// tokens the grammar accepts or rejects whatever lies below them are found once, by walking the
// vocabulary's byte trie; only the few tokens that run past those frames ("uncertain") are checked
// against the real stack at each step. A Matcher is one sequence's parser state (a set of stacks
// per accepted token, so rollback is popping); it shares the CompiledGrammar read-only apart from
// the cache, which is filled under a lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "tessera/grammar/grammar.h"
#include "tessera/grammar/vocabulary.h"

namespace tessera::grammar {

struct MatcherLimits {
  // Parse stacks alive at once: an ambiguous grammar past it is refused. Each new stack top can
  // cost a trie walk, so this bounds a step's worst case too.
  size_t max_stacks = 512;
  size_t max_cache_entries = 4096;  // mask cache entries kept; past it entries are not stored
  size_t max_key_frames = 8;        // frames a cache key may span
};

struct MaskEntry {
  std::vector<uint64_t> accepted;  // bitmask over the vocabulary
  std::vector<int32_t> uncertain;  // tokens to check against the whole stack
};

class CompiledGrammar {
 public:
  CompiledGrammar(Grammar grammar, std::shared_ptr<const Vocabulary> vocab,
                  const MatcherLimits& limits = {});

  const Grammar& grammar() const { return grammar_; }
  const Vocabulary& vocab() const { return *vocab_; }
  const MatcherLimits& limits() const { return limits_; }
  // The cache entry for a stack whose top frames are at `key` (top first), computed on first use.
  std::shared_ptr<const MaskEntry> entry(const std::vector<uint32_t>& key) const;
  size_t cache_size() const;

 private:
  Grammar grammar_;
  std::shared_ptr<const Vocabulary> vocab_;
  MatcherLimits limits_;
  mutable std::mutex mu_;
  mutable std::map<std::vector<uint32_t>, std::shared_ptr<const MaskEntry>> cache_;

  MaskEntry compute(const std::vector<uint32_t>& key) const;
};

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const CompiledGrammar> grammar);
  ~Matcher();
  Matcher(Matcher&&) noexcept;
  Matcher& operator=(Matcher&&) noexcept;

  // Sets bit t of `mask` (vocab().mask_words() words) exactly when token t may come next. EOS
  // tokens are allowed exactly when the grammar is complete; once EOS is accepted, nothing is.
  void fill_mask(std::span<uint64_t> mask);
  // Advances on `token`; false (state unchanged) when the grammar does not allow it.
  bool accept(int32_t token);
  // Undoes the last `n` accepted tokens (n <= num_accepted()).
  void rollback(size_t n);
  size_t num_accepted() const;
  // The input so far is a whole sentence of the grammar.
  bool is_complete() const;
  // EOS was accepted.
  bool is_terminated() const;
  // Nothing but EOS can follow (complete, and no stack can read another byte).
  bool only_eos_left() const;

 private:
  struct State;  // the stack pool and the stack sets (pda.h is private to the module)
  std::unique_ptr<State> s_;
};

}  // namespace tessera::grammar
