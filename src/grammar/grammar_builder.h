// The builder behind Grammar::parse and the front ends: named and synthetic rules, byte classes,
// UTF-8 expansion of code point classes, repetition desugaring, and the final checks (undefined
// rules, left recursion, size caps). One builder makes one Grammar and owns everything until then.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/grammar/grammar.h"

namespace tessera::grammar {

struct Item {
  ElemKind kind = ElemKind::kClass;
  uint32_t arg = 0;
};
using Seq = std::vector<Item>;
using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive

inline constexpr int kUnbounded = -1;

class GrammarBuilder {
 public:
  explicit GrammarBuilder(const GrammarLimits& limits) : limits_(limits) {}

  // A named rule, created on first mention so that rules may be used before they are defined.
  uint32_t named_rule(std::string_view name);
  void define(uint32_t rule, std::vector<Seq> alts);
  // Synthetic rules are named after the named rule being built (for error messages).
  void set_context(std::string_view rule_name) { context_ = rule_name; }
  uint32_t synthetic(std::vector<Seq> alts);

  Item byte_class(const ByteClass& cls);
  // A class of Unicode code points (surrogates never match), as one byte class when ASCII-only,
  // else as a synthetic rule of UTF-8 byte sequences.
  Item codepoint_class(CodepointRanges ranges, bool negated);
  void append_literal(std::string_view bytes, Seq& out);
  // x{min,max} (max kUnbounded: no upper bound) appended to `out`.
  void append_repeat(const Item& x, int min, int max, Seq& out);
  // One item for a whole sequence (itself when it has one item).
  Item as_item(Seq seq);

  Grammar finish(std::string_view root_name = "root");

 private:
  GrammarLimits limits_;
  std::vector<Rule> rules_;
  std::vector<std::optional<std::vector<Seq>>> bodies_;
  std::map<std::string, uint32_t, std::less<>> names_;
  std::vector<ByteClass> classes_;
  std::map<std::array<uint64_t, 4>, uint32_t> class_index_;
  std::map<CodepointRanges, Item> codepoint_index_;
  std::string context_;
  size_t elements_ = 0;
  size_t synthetic_count_ = 0;

  uint32_t new_rule(std::string name, bool synthetic);
  void count(size_t n);
  void check_left_recursion() const;
};

// Splits an inclusive code point range (no surrogates) into UTF-8 byte-range sequences, each a
// list of inclusive (lo, hi) byte ranges, one per byte of the encoding.
std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(uint32_t lo, uint32_t hi);
// Appends the UTF-8 encoding of a code point.
void append_utf8(uint32_t cp, std::string& out);

}  // namespace tessera::grammar
