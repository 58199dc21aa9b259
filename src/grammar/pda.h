// The pushdown automaton's moves over a Grammar. A stack is a chain of frames, each the position
// of the next element to match in one alternative; frames are hash-consed in a StackPool, so a
// stack is one int and equal stacks are equal ints (a set of stacks dedups by sorting). A stack
// is canonical when its top is a byte class (it waits for a byte) or it is kEmpty (the start rule
// is complete). kSentinel stands for "whatever lies below" when the mask cache explores a rule
// without its context. The pool belongs to whoever runs the automaton (a matcher, a cache fill).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "tessera/grammar/grammar.h"

namespace tessera::grammar {

inline constexpr int32_t kEmpty = -1;
inline constexpr int32_t kSentinel = -2;

class StackPool {
 public:
  struct Node {
    uint32_t pos;
    int32_t parent;
  };
  int32_t get(int32_t parent, uint32_t pos);
  const Node& operator[](int32_t id) const { return nodes_[static_cast<size_t>(id)]; }
  size_t size() const { return nodes_.size(); }
  // Forgets the nodes made after size() was `n` (scratch work of one mask computation).
  void truncate(size_t n);

 private:
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> index_;
};

class Pda {
 public:
  Pda(const Grammar& g, StackPool& pool, size_t max_stacks)
      : g_(g), pool_(pool), max_stacks_(max_stacks) {}

  // The canonical stacks of the start rule.
  std::vector<int32_t> initial();
  // Stacks after `byte` from the canonical set `in` (sorted, unique; may hold kEmpty or
  // kSentinel). Throws kResourceExhausted past max_stacks (an ambiguous grammar).
  void advance(std::span<const int32_t> in, uint8_t byte, std::vector<int32_t>& out);
  // Whether `bytes` can be read from the set `in`, ending anywhere (possibly complete).
  bool accepts(std::span<const int32_t> in, std::span<const uint8_t> bytes);

 private:
  const Grammar& g_;
  StackPool& pool_;
  size_t max_stacks_;
  std::vector<int32_t> work_, a_, b_;

  // Adds the canonical stacks reachable from `s` without reading a byte.
  void expand(int32_t s, std::vector<int32_t>& out);
  void finish(std::vector<int32_t>& out) const;
};

}  // namespace tessera::grammar
