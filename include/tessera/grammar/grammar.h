// A context-free grammar over bytes, compiled from a GBNF-like text (llama.cpp's syntax: rules
// `name ::= ...`, alternation, sequences, "literals", [classes] with ranges and ^, `.`, groups,
// `*` `+` `?` and `{m,n}`). Everything works on bytes: non-ASCII characters and classes become
// UTF-8 byte sequences at compile time, so a token that ends inside a character is matched like
// any other prefix. Repetitions and groups become synthetic rules; the result is a flat array of
// elements that the pushdown automaton (grammar/matcher.h) walks. A Grammar is an immutable value
// owned by whoever compiled it; it holds no other state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::grammar {

// Caps that bound compile time and size: a grammar over them is refused (kResourceExhausted).
struct GrammarLimits {
  size_t max_source_bytes = 1 << 20;
  size_t max_elements = 200'000;  // flat elements after desugaring repetitions and UTF-8
  size_t max_rules = 50'000;
  int max_repetition = 1'000;  // the largest m or n of a `{m,n}`
};

struct ByteClass {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void set(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  bool operator==(const ByteClass&) const = default;
};

enum class ElemKind : uint8_t { kEnd, kClass, kRef };

struct Elem {
  ElemKind kind = ElemKind::kEnd;
  uint32_t arg = 0;  // kClass: index into classes(); kRef: rule index
};

struct Rule {
  std::string name;
  std::vector<uint32_t> alts;  // start position of each alternative in elems()
  bool synthetic = false;      // made by desugaring (a group, a repetition, a UTF-8 class)
};

class Grammar {
 public:
  // Parses GBNF text whose start rule is `root`. Throws tessera::Error: kInvalidArgument for a
  // syntax error, an undefined rule or left recursion (naming the rule); kResourceExhausted when
  // over `limits`.
  static Grammar parse(std::string_view source, const GrammarLimits& limits = {});

  const std::vector<Elem>& elems() const { return elems_; }
  const std::vector<Rule>& rules() const { return rules_; }
  const std::vector<ByteClass>& classes() const { return classes_; }
  uint32_t root() const { return root_; }
  // The rule that owns the element at `pos` (every alternative lies inside one rule).
  uint32_t rule_of(uint32_t pos) const { return rule_of_[pos]; }

 private:
  friend class GrammarBuilder;
  std::vector<Elem> elems_;
  std::vector<Rule> rules_;
  std::vector<ByteClass> classes_;
  std::vector<uint32_t> rule_of_;
  uint32_t root_ = 0;
};

// A GBNF string literal ("...") that matches exactly `text` (any bytes), for the front ends.
std::string gbnf_literal(std::string_view text);

}  // namespace tessera::grammar
