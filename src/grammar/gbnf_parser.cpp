// Grammar::parse: the GBNF-like text syntax (llama.cpp's), read by a recursive-descent parser into
// a GrammarBuilder. Newlines are plain whitespace: a rule ends where the next `name ::=` starts.
// The parser holds only its cursor; the builder owns what it builds.
#include <cctype>
#include <cstdio>

#include "grammar_builder.h"
#include "tessera/core/error.h"

namespace tessera::grammar {
namespace {

class GbnfParser {
 public:
  GbnfParser(std::string_view src, GrammarBuilder& b) : s_(src), b_(b) {}

  void parse() {
    skip_space();
    if (eof()) error("empty grammar");
    while (!eof()) {
      std::string_view name = ident();
      if (name.empty()) error("expected a rule name");
      skip_space();
      if (!consume("::=")) error("expected '::=' after rule name '", name, "'");
      b_.set_context(name);
      uint32_t rule = b_.named_rule(name);
      b_.define(rule, alternatives(false));
      skip_space();
    }
  }

 private:
  std::string_view s_;
  GrammarBuilder& b_;
  size_t i_ = 0;
  int depth_ = 0;

  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail(ErrorCode::kInvalidArgument, "grammar ", line, ":", col, ": ",
         std::forward<Args>(args)...);
  }

  bool eof() const { return i_ >= s_.size(); }
  char peek(size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }
  bool consume(std::string_view t) {
    if (s_.substr(i_, t.size()) != t) return false;
    i_ += t.size();
    return true;
  }
  static bool ident_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  }
  void skip_space() {
    while (!eof()) {
      char c = peek();
      if (c == '#') {
        while (!eof() && peek() != '\n') ++i_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i_;
      } else {
        break;
      }
    }
  }
  std::string_view ident() {
    size_t start = i_;
    while (!eof() && ident_char(peek())) ++i_;
    return s_.substr(start, i_ - start);
  }
  // Whether a rule definition `name ::=` starts here (ends the current rule).
  bool at_rule_start() {
    size_t save = i_;
    bool yes = !ident().empty();
    if (yes) {
      skip_space();
      yes = s_.substr(i_, 3) == "::=";
    }
    i_ = save;
    return yes;
  }

  std::vector<Seq> alternatives(bool nested) {
    if (++depth_ > 100) error("groups nested more than 100 deep");
    std::vector<Seq> alts{sequence(nested)};
    while (peek() == '|') {
      ++i_;
      alts.push_back(sequence(nested));
    }
    --depth_;
    return alts;
  }

  Seq sequence(bool nested) {
    Seq seq;
    for (;;) {
      skip_space();
      if (eof() || peek() == '|' || peek() == ')') break;
      if (!nested && at_rule_start()) break;
      Seq prim = primary();
      postfix(std::move(prim), seq);
    }
    return seq;
  }

  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      char c = peek();
      if (!std::isxdigit(static_cast<unsigned char>(c))) error("bad hex escape");
      v = v * 16 +
          static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c))
                                    ? c - '0'
                                    : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
      ++i_;
    }
    return v;
  }

  // One character of a literal or class: (code point, whether it was a \x byte escape).
  std::pair<uint32_t, bool> character() {
    if (eof()) error("unterminated literal or class");
    unsigned char c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++i_;
      char e = peek();
      ++i_;
      switch (e) {
        case 'n':
          return {'\n', false};
        case 'r':
          return {'\r', false};
        case 't':
          return {'\t', false};
        case '0':
          return {0, false};
        case 'x':
          return {hex(2), true};
        case 'u':
          return {hex(4), false};
        case 'U':
          return {hex(8), false};
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
          return {static_cast<uint32_t>(e), false};
        default:
          error("unknown escape '\\", e, "'");
      }
    }
    // A UTF-8 character of the source.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i_ + static_cast<size_t>(len) > s_.size()) error("invalid UTF-8 in grammar");
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s_[i_ + k]) & 0x3F);
    i_ += static_cast<size_t>(len);
    return {cp, false};
  }

  Seq primary() {
    char c = peek();
    Seq seq;
    if (c == '"') {
      ++i_;
      std::string bytes;
      while (peek() != '"') {
        if (eof()) error("unterminated literal");
        auto [cp, raw_byte] = character();
        if (raw_byte)
          bytes.push_back(static_cast<char>(cp));
        else
          append_utf8(cp, bytes);
      }
      ++i_;
      b_.append_literal(bytes, seq);
      return seq;
    }
    if (c == '[') {
      ++i_;
      bool negated = consume("^");
      CodepointRanges ranges;
      while (peek() != ']') {
        if (eof()) error("unterminated character class");
        uint32_t lo = character().first, hi = lo;
        if (peek() == '-' && peek(1) != ']') {
          ++i_;
          hi = character().first;
          if (hi < lo) error("character range out of order");
        }
        ranges.emplace_back(lo, hi);
      }
      ++i_;
      seq.push_back(b_.codepoint_class(std::move(ranges), negated));
      return seq;
    }
    if (c == '.') {
      ++i_;
      seq.push_back(b_.codepoint_class({{0, 0x10FFFF}}, false));
      return seq;
    }
    if (c == '(') {
      ++i_;
      std::vector<Seq> alts = alternatives(true);
      skip_space();
      if (!consume(")")) error("expected ')'");
      if (alts.size() == 1) return alts[0];
      seq.push_back(Item{ElemKind::kRef, b_.synthetic(std::move(alts))});
      return seq;
    }
    std::string_view name = ident();
    if (name.empty()) error("unexpected character '", c, "'");
    seq.push_back(Item{ElemKind::kRef, b_.named_rule(name)});
    return seq;
  }

  int number() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) error("expected a number in {m,n}");
    long v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      v = v * 10 + (peek() - '0');
      if (v > 1'000'000) error("repetition bound too large");
      ++i_;
    }
    return static_cast<int>(v);
  }

  void postfix(Seq prim, Seq& out) {
    char c = peek();
    if (c != '*' && c != '+' && c != '?' && c != '{') {
      out.insert(out.end(), prim.begin(), prim.end());
      return;
    }
    if (prim.empty()) error("repetition of nothing");
    ++i_;
    Item x = b_.as_item(std::move(prim));
    int min = 0, max = kUnbounded;
    if (c == '+') {
      min = 1;
    } else if (c == '?') {
      max = 1;
    } else if (c == '{') {
      skip_space();
      min = number();
      skip_space();
      max = min;
      if (consume(",")) {
        skip_space();
        max = peek() == '}' ? kUnbounded : number();
        skip_space();
      }
      if (!consume("}")) error("expected '}'");
    }
    b_.append_repeat(x, min, max, out);
  }
};

}  // namespace

Grammar Grammar::parse(std::string_view source, const GrammarLimits& limits) {
  if (source.size() > limits.max_source_bytes)
    fail(ErrorCode::kResourceExhausted, "grammar source is ", source.size(), " bytes, over ",
         limits.max_source_bytes);
  GrammarBuilder b(limits);
  GbnfParser(source, b).parse();
  return b.finish();
}

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace tessera::grammar
