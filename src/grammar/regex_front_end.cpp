// regex → GBNF (see front_ends.h): a recursive-descent reader of the practical regex subset that
// writes the equivalent GBNF expression; character classes become code point range lists.
// Stateless apart from the reader's cursor.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "grammar_builder.h"
#include "tessera/core/error.h"
#include "tessera/grammar/front_ends.h"

namespace tessera::grammar {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

std::string escape_cp(uint32_t cp) {
  if (cp < 0x80 && std::isalnum(static_cast<int>(cp))) return std::string(1, static_cast<char>(cp));
  char buf[16];
  if (cp <= 0xFFFF)
    std::snprintf(buf, sizeof buf, "\\u%04X", cp);
  else
    std::snprintf(buf, sizeof buf, "\\U%08X", cp);
  return buf;
}

std::string class_text(const Ranges& ranges, bool negated) {
  std::string out = negated ? "[^" : "[";
  for (auto [lo, hi] : ranges) {
    out += escape_cp(lo);
    if (hi != lo) out += "-" + escape_cp(hi);
  }
  return out + "]";
}

const Ranges kDigit = {{'0', '9'}};
const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}};
// What a JSON string may hold unescaped: everything but '"', '\\' and control characters.
const Ranges kJsonUnsafe = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};

Ranges negate(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = std::max(next, hi + 1);
  }
  if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
  return out;
}

Ranges subtract(const Ranges& a, const Ranges& b) {
  Ranges nb = negate(b), out;
  for (auto [alo, ahi] : a)
    for (auto [blo, bhi] : nb) {
      uint32_t lo = std::max(alo, blo), hi = std::min(ahi, bhi);
      if (lo <= hi) out.emplace_back(lo, hi);
    }
  return out;
}

class RegexReader {
 public:
  RegexReader(std::string_view re, bool json) : s_(re), json_(json) {}

  std::string read() {
    if (peek() == '^') ++i_;
    std::string e = alternation();
    if (i_ != s_.size()) error("unexpected '", s_[i_], "'");
    return e;
  }

 private:
  std::string_view s_;
  bool json_;
  size_t i_ = 0;
  int depth_ = 0;

  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    fail(ErrorCode::kInvalidArgument, "regex at offset ", i_, ": ", std::forward<Args>(args)...);
  }
  bool eof() const { return i_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[i_]; }

  std::string alternation() {
    if (++depth_ > 100) error("groups nested more than 100 deep");
    std::string e = "(" + sequence();
    while (peek() == '|') {
      ++i_;
      e += " | " + sequence();
    }
    --depth_;
    return e + ")";
  }

  std::string sequence() {
    std::string e = "\"\"";
    while (!eof() && peek() != '|' && peek() != ')') {
      if (peek() == '$' && i_ + 1 == s_.size()) {
        ++i_;
        break;
      }
      std::string a = atom();
      e += " " + a + quantifier();
    }
    return e;
  }

  int number() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) error("expected a number");
    long v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      v = v * 10 + (peek() - '0');
      if (v > 100000) error("repetition bound too large");
      ++i_;
    }
    return static_cast<int>(v);
  }

  std::string quantifier() {
    std::string q;
    char c = peek();
    if (c == '*' || c == '+' || c == '?') {
      ++i_;
      q = std::string(1, c);
    } else if (c == '{' && i_ + 1 < s_.size() &&
               std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
      ++i_;
      int m = number(), n = m;
      bool open = false;
      if (peek() == ',') {
        ++i_;
        if (peek() == '}')
          open = true;
        else
          n = number();
      }
      if (peek() != '}') error("expected '}'");
      ++i_;
      q = "{" + std::to_string(m) + (open ? "," : m == n ? "" : "," + std::to_string(n)) + "}";
    } else {
      return "";
    }
    if (peek() == '?') ++i_;  // lazy: the same language when matched whole
    if (peek() == '+') error("possessive quantifiers are not supported");
    if (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')
      error("nested quantifier");
    return q;
  }

  uint32_t utf8_char() {
    auto c = static_cast<unsigned char>(s_[i_]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i_ + static_cast<size_t>(len) > s_.size()) error("invalid UTF-8");
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s_[i_ + k]) & 0x3F);
    i_ += static_cast<size_t>(len);
    return cp;
  }

  uint32_t hex(int n) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k, ++i_) {
      char c = peek();
      if (!std::isxdigit(static_cast<unsigned char>(c))) error("bad hex escape");
      v = v * 16 +
          static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c))
                                    ? c - '0'
                                    : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
    }
    return v;
  }

  // After a backslash: a class escape (\d ...) as ranges, or one code point.
  std::pair<Ranges, bool> escape() {
    if (eof()) error("trailing backslash");
    char e = s_[i_++];
    switch (e) {
      case 'd':
        return {kDigit, false};
      case 'w':
        return {kWord, false};
      case 's':
        return {kSpace, false};
      case 'D':
        return {kDigit, true};
      case 'W':
        return {kWord, true};
      case 'S':
        return {kSpace, true};
      case 'n':
        return {{{'\n', '\n'}}, false};
      case 't':
        return {{{'\t', '\t'}}, false};
      case 'r':
        return {{{'\r', '\r'}}, false};
      case 'f':
        return {{{'\f', '\f'}}, false};
      case 'v':
        return {{{'\v', '\v'}}, false};
      case 'x': {
        uint32_t v = hex(2);
        return {{{v, v}}, false};
      }
      case 'u': {
        uint32_t v = hex(4);
        return {{{v, v}}, false};
      }
      case 'b':
      case 'B':
        error("word boundaries (\\", e, ") are not supported");
      default:
        if (std::isalnum(static_cast<unsigned char>(e)))
          error("unknown escape \\", e, " (backreferences are not supported)");
        return {{{static_cast<uint32_t>(static_cast<unsigned char>(e)),
                  static_cast<uint32_t>(static_cast<unsigned char>(e))}},
                false};
    }
  }

  std::string ranges_text(Ranges r, bool negated) {
    if (json_) {
      if (negated) {
        r = negate(r);
        negated = false;
      }
      r = subtract(r, kJsonUnsafe);
      if (r.empty()) error("a class matches nothing a JSON string may hold unescaped");
    }
    return class_text(r, negated);
  }

  std::string atom() {
    char c = peek();
    if (c == '(') {
      ++i_;
      if (peek() == '?') {
        if (i_ + 1 < s_.size() && s_[i_ + 1] == ':')
          i_ += 2;
        else
          error("lookaround, named groups and inline flags are not supported");
      }
      std::string e = alternation();
      if (peek() != ')') error("expected ')'");
      ++i_;
      return e;
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++i_;
      return ranges_text({{'\n', '\n'}}, true);
    }
    if (c == '^' || c == '$') error("anchors are supported only at the ends");
    if (c == '*' || c == '+' || c == '?') error("quantifier without an operand");
    if (c == '\\') {
      ++i_;
      auto [r, neg] = escape();
      return ranges_text(r, neg);
    }
    uint32_t cp = utf8_char();
    return ranges_text({{cp, cp}}, false);
  }

  std::string char_class() {
    ++i_;
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++i_;
    }
    Ranges r;
    bool first = true;
    while (first || peek() != ']') {
      if (eof()) error("unterminated character class");
      first = false;
      uint32_t lo;
      if (peek() == '\\') {
        ++i_;
        auto [er, neg] = escape();
        if (neg) er = negate(er);
        if (er.size() != 1 || er[0].first != er[0].second) {
          r.insert(r.end(), er.begin(), er.end());
          continue;
        }
        lo = er[0].first;
      } else {
        lo = utf8_char();
      }
      uint32_t hi = lo;
      if (peek() == '-' && i_ + 1 < s_.size() && s_[i_ + 1] != ']') {
        ++i_;
        if (peek() == '\\') {
          ++i_;
          auto [er, neg] = escape();
          if (neg || er.size() != 1 || er[0].first != er[0].second) error("bad range end");
          hi = er[0].first;
        } else {
          hi = utf8_char();
        }
        if (hi < lo) error("range out of order");
      }
      r.emplace_back(lo, hi);
    }
    ++i_;
    return ranges_text(r, negated);
  }
};

}  // namespace

std::string regex_to_gbnf_expr(std::string_view regex, bool json_string) {
  return RegexReader(regex, json_string).read();
}

std::string regex_to_gbnf(std::string_view regex) {
  return "root ::= " + regex_to_gbnf_expr(regex, false) + "\n";
}

std::string choice_to_gbnf(std::span<const std::string> choices) {
  if (choices.empty()) fail(ErrorCode::kInvalidArgument, "choice list is empty");
  std::string out = "root ::= ";
  for (size_t i = 0; i < choices.size(); ++i) {
    if (choices[i].empty()) fail(ErrorCode::kInvalidArgument, "choice ", i, " is empty");
    out += (i ? " | " : "") + gbnf_literal(choices[i]);
  }
  return out + "\n";
}

}  // namespace tessera::grammar
