// GrammarBuilder: desugaring into flat rules and the checks that make a Grammar safe to run
// (every rule defined, no left recursion, size caps). State lives in one builder per compile.
#include "grammar_builder.h"

#include <algorithm>
#include <functional>

#include "tessera/core/error.h"

namespace tessera::grammar {

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Rust regex-syntax's Utf8Sequences: split until both ends share every prefix byte but one range
// per position, then the encodings of lo and hi give the byte ranges position by position.
void split_utf8(uint32_t lo, uint32_t hi,
                std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  for (uint32_t max : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= max && hi > max) {
      split_utf8(lo, max, out);
      split_utf8(max + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7F) {
    out.push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  for (int i = 1; i < 4; ++i) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split_utf8(lo, lo | m, out);
        split_utf8((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split_utf8(lo, (hi & ~m) - 1, out);
        split_utf8(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  append_utf8(lo, a);
  append_utf8(hi, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t i = 0; i < a.size(); ++i)
    seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  out.push_back(std::move(seq));
}

CodepointRanges normalize(CodepointRanges r) {
  std::sort(r.begin(), r.end());
  CodepointRanges merged;
  for (auto [lo, hi] : r) {
    hi = std::min<uint32_t>(hi, 0x10FFFF);
    if (lo > hi) continue;
    if (!merged.empty() && lo <= merged.back().second + 1)
      merged.back().second = std::max(merged.back().second, hi);
    else
      merged.emplace_back(lo, hi);
  }
  return merged;
}

CodepointRanges complement(const CodepointRanges& r) {
  CodepointRanges out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
  return out;
}

CodepointRanges without_surrogates(const CodepointRanges& r) {
  CodepointRanges out;
  for (auto [lo, hi] : r) {
    if (hi < 0xD800 || lo > 0xDFFF) {
      out.emplace_back(lo, hi);
      continue;
    }
    if (lo < 0xD800) out.emplace_back(lo, 0xD7FF);
    if (hi > 0xDFFF) out.emplace_back(0xE000, hi);
  }
  return out;
}

}  // namespace

std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(uint32_t lo, uint32_t hi) {
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> out;
  split_utf8(lo, hi, out);
  return out;
}

uint32_t GrammarBuilder::new_rule(std::string name, bool synthetic) {
  if (rules_.size() >= limits_.max_rules)
    fail(ErrorCode::kResourceExhausted, "grammar has more than ", limits_.max_rules, " rules");
  rules_.push_back(Rule{std::move(name), {}, synthetic});
  bodies_.emplace_back();
  return static_cast<uint32_t>(rules_.size() - 1);
}

void GrammarBuilder::count(size_t n) {
  elements_ += n;
  if (elements_ > limits_.max_elements)
    fail(ErrorCode::kResourceExhausted, "grammar has more than ", limits_.max_elements,
         " elements once repetitions and characters are expanded");
}

uint32_t GrammarBuilder::named_rule(std::string_view name) {
  auto it = names_.find(name);
  if (it != names_.end()) return it->second;
  uint32_t id = new_rule(std::string(name), false);
  names_.emplace(std::string(name), id);
  return id;
}

void GrammarBuilder::define(uint32_t rule, std::vector<Seq> alts) {
  if (bodies_[rule])
    fail(ErrorCode::kInvalidArgument, "rule '", rules_[rule].name, "' is defined twice");
  for (const Seq& s : alts) count(s.size() + 1);
  bodies_[rule] = std::move(alts);
}

uint32_t GrammarBuilder::synthetic(std::vector<Seq> alts) {
  uint32_t id = new_rule(context_ + "/" + std::to_string(++synthetic_count_), true);
  define(id, std::move(alts));
  return id;
}

Item GrammarBuilder::byte_class(const ByteClass& cls) {
  auto [it, fresh] = class_index_.emplace(cls.bits, static_cast<uint32_t>(classes_.size()));
  if (fresh) classes_.push_back(cls);
  return Item{ElemKind::kClass, it->second};
}

Item GrammarBuilder::codepoint_class(CodepointRanges ranges, bool negated) {
  ranges = normalize(std::move(ranges));
  if (negated) ranges = complement(ranges);
  ranges = without_surrogates(ranges);
  if (ranges.empty()) fail(ErrorCode::kInvalidArgument, "a character class matches nothing");
  if (auto it = codepoint_index_.find(ranges); it != codepoint_index_.end()) return it->second;
  ByteClass ascii;
  bool has_ascii = false;
  std::vector<Seq> alts;
  for (auto [lo, hi] : ranges) {
    for (const auto& seq : utf8_sequences(lo, hi)) {
      if (seq.size() == 1) {
        for (uint32_t b = seq[0].first; b <= seq[0].second; ++b) ascii.set(static_cast<uint8_t>(b));
        has_ascii = true;
        continue;
      }
      Seq s;
      for (auto [blo, bhi] : seq) {
        ByteClass c;
        for (uint32_t b = blo; b <= bhi; ++b) c.set(static_cast<uint8_t>(b));
        s.push_back(byte_class(c));
      }
      alts.push_back(std::move(s));
    }
  }
  Item item;
  if (alts.empty()) {
    item = byte_class(ascii);
  } else {
    if (has_ascii) alts.insert(alts.begin(), Seq{byte_class(ascii)});
    item = Item{ElemKind::kRef, synthetic(std::move(alts))};
  }
  codepoint_index_.emplace(std::move(ranges), item);
  return item;
}

void GrammarBuilder::append_literal(std::string_view bytes, Seq& out) {
  for (char ch : bytes) {
    ByteClass c;
    c.set(static_cast<uint8_t>(ch));
    out.push_back(byte_class(c));
  }
}

Item GrammarBuilder::as_item(Seq seq) {
  if (seq.size() == 1) return seq[0];
  return Item{ElemKind::kRef, synthetic({std::move(seq)})};
}

void GrammarBuilder::append_repeat(const Item& x, int min, int max, Seq& out) {
  if (min < 0 || (max != kUnbounded && max < min))
    fail(ErrorCode::kInvalidArgument, "bad repetition bounds {", min, ",", max, "}");
  if (min > limits_.max_repetition || max > limits_.max_repetition)
    fail(ErrorCode::kResourceExhausted, "repetition bound over ", limits_.max_repetition);
  count(static_cast<size_t>(min));
  for (int i = 0; i < min; ++i) out.push_back(x);
  if (max == kUnbounded) {
    // x* as  S ::= x S | ε  (right recursion: the matcher pops S's frame before pushing the next)
    uint32_t s = new_rule(context_ + "/" + std::to_string(++synthetic_count_), true);
    define(s, {Seq{x, Item{ElemKind::kRef, s}}, Seq{}});
    out.push_back(Item{ElemKind::kRef, s});
    return;
  }
  if (max == min) return;
  // x{0,k} as nested options  (x (x (...)?)?)? : k rules, each one frame deep at a time.
  uint32_t inner = synthetic({Seq{x}, Seq{}});
  for (int i = 1; i < max - min; ++i)
    inner = synthetic({Seq{x, Item{ElemKind::kRef, inner}}, Seq{}});
  out.push_back(Item{ElemKind::kRef, inner});
}

void GrammarBuilder::check_left_recursion() const {
  size_t n = rules_.size();
  std::vector<char> nullable(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Seq& s : *bodies_[r]) {
        bool all = std::all_of(s.begin(), s.end(), [&](const Item& it) {
          return it.kind == ElemKind::kRef && nullable[it.arg];
        });
        if (all) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  // Edges to the rules that can start a rule's expansion without consuming a byte.
  std::vector<std::vector<uint32_t>> left(n);
  for (size_t r = 0; r < n; ++r)
    for (const Seq& s : *bodies_[r])
      for (const Item& it : s) {
        if (it.kind != ElemKind::kRef) break;
        left[r].push_back(it.arg);
        if (!nullable[it.arg]) break;
      }
  std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
  for (size_t start = 0; start < n; ++start) {
    if (color[start]) continue;
    std::vector<std::pair<uint32_t, size_t>> stack{{static_cast<uint32_t>(start), 0}};
    color[start] = 1;
    while (!stack.empty()) {
      auto& [r, i] = stack.back();
      if (i == left[r].size()) {
        color[r] = 2;
        stack.pop_back();
        continue;
      }
      uint32_t next = left[r][i++];
      if (color[next] == 1)
        fail(ErrorCode::kInvalidArgument, "left recursion through rule '", rules_[next].name,
             "' (it can reach itself without consuming input; a repetition of something that "
             "can be empty does this too)");
      if (color[next] == 0) {
        color[next] = 1;
        stack.emplace_back(next, 0);
      }
    }
  }
}

Grammar GrammarBuilder::finish(std::string_view root_name) {
  auto root = names_.find(root_name);
  if (root == names_.end() || !bodies_[root->second])
    fail(ErrorCode::kInvalidArgument, "grammar has no '", root_name, "' rule");
  for (size_t r = 0; r < rules_.size(); ++r)
    if (!bodies_[r]) fail(ErrorCode::kInvalidArgument, "undefined rule '", rules_[r].name, "'");
  check_left_recursion();
  Grammar g;
  g.root_ = root->second;
  g.classes_ = classes_;
  for (size_t r = 0; r < rules_.size(); ++r) {
    Rule rule = rules_[r];
    for (const Seq& s : *bodies_[r]) {
      rule.alts.push_back(static_cast<uint32_t>(g.elems_.size()));
      for (const Item& it : s) {
        g.elems_.push_back(Elem{it.kind, it.arg});
        g.rule_of_.push_back(static_cast<uint32_t>(r));
      }
      g.elems_.push_back(Elem{ElemKind::kEnd, 0});
      g.rule_of_.push_back(static_cast<uint32_t>(r));
    }
    g.rules_.push_back(std::move(rule));
  }
  return g;
}

}  // namespace tessera::grammar
