// Jinja lexer. Mirrors jinja2's lexer rules for the default delimiters with trim_blocks and
// lstrip_blocks on, because the whitespace a chat template emits must match Python byte for byte.
#include "tessera/tokenizer/jinja_lexer.h"
#include "tessera/tokenizer/unicode.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "tessera/core/error.h"

namespace tessera::tokenizer::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) {
    // jinja2 normalizes every newline sequence to "\n" and drops one trailing newline.
    src_.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\r') {
        src_ += '\n';
        if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
      } else {
        src_ += src[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos <= src_.size()) {
      size_t start = src_.find('{', pos);
      while (start != std::string::npos && start + 1 < src_.size() && src_[start + 1] != '{' &&
             src_[start + 1] != '%' && src_[start + 1] != '#') {
        start = src_.find('{', start + 1);
      }
      if (start != std::string::npos && start + 1 >= src_.size()) start = std::string::npos;
      std::string text = src_.substr(pos, (start == std::string::npos ? src_.size() : start) - pos);
      if (start == std::string::npos) {
        if (!text.empty()) push_text(std::move(text), pos);
        break;
      }
      char kind = src_[start + 1];
      char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      apply_left_strip(text, sign, kind != '{', line_starting);
      if (!text.empty()) push_text(std::move(text), pos);
      size_t after = start + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = lex_comment(start, after, line_starting);
      } else if (kind == '%' && is_raw(after)) {
        pos = lex_raw(start, after, line_starting);
      } else {
        pos = lex_tag(start, after, kind == '%', line_starting);
      }
    }
    Token eof{Token::Type::kEof, "", 0, 0.0, 0, 0};
    set_pos(eof, src_.size());
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t pos, const std::string& msg) {
    Token t;
    set_pos(t, pos);
    fail(ErrorCode::kInvalidArgument, "chat template syntax error at line ", t.line, ", column ",
         t.col, ": ", msg);
  }

  void set_pos(Token& t, size_t pos) {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    t.line = static_cast<int>(line);
    t.col = static_cast<int>(pos - line_starts_[line - 1] + 1);
  }

  void push_text(std::string text, size_t pos) {
    Token t{Token::Type::kText, std::move(text), 0, 0.0, 0, 0};
    set_pos(t, pos);
    tokens_.push_back(std::move(t));
  }

  void push(Token::Type type, std::string text, size_t pos) {
    Token t{type, std::move(text), 0, 0.0, 0, 0};
    set_pos(t, pos);
    tokens_.push_back(std::move(t));
  }

  // "{%-" strips all whitespace before the tag; lstrip_blocks strips spaces/tabs between the
  // line start and a block or comment tag unless it is marked "+".
  static void apply_left_strip(std::string& text, char sign, bool block_or_comment,
                               bool line_starting) {
    if (sign == '-') {
      size_t end = text.size();
      while (end > 0 && is_space(text[end - 1])) --end;
      text.resize(end);
    } else if (sign != '+' && block_or_comment) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if (l_pos > 0 || line_starting) {
        bool only_ws = std::all_of(text.begin() + static_cast<std::ptrdiff_t>(l_pos), text.end(),
                                   [](char c) { return c == ' ' || c == '\t'; });
        if (only_ws) text.resize(l_pos);
      }
    }
  }

  // After a tag end: "-" eats all following whitespace, "+" nothing, otherwise (blocks and
  // comments only) trim_blocks eats one newline. Returns the new position.
  size_t after_end(size_t pos, char end_sign, bool trim_block, bool& line_starting) {
    size_t p = pos;
    if (end_sign == '-') {
      while (p < src_.size() && is_space(src_[p])) ++p;
    } else if (end_sign != '+' && trim_block && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    line_starting = p > 0 && p > pos ? src_[p - 1] == '\n' : false;
    return p;
  }

  size_t lex_comment(size_t start, size_t after, bool& line_starting) {
    size_t end = src_.find("#}", after);
    if (end == std::string::npos) error(start, "missing end of comment tag");
    char sign = (end > after && (src_[end - 1] == '-' || src_[end - 1] == '+')) ? src_[end - 1] : 0;
    return after_end(end + 2, sign, true, line_starting);
  }

  bool is_raw(size_t p) {
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  size_t lex_raw(size_t start, size_t after, bool& line_starting) {
    size_t p = src_.find("%}", after);
    char sign = src_[p - 1] == '-' ? '-' : 0;
    size_t body = after_end(p + 2, sign, false, line_starting);
    // Find "{%[-+]? endraw [-+]?%}".
    size_t search = body;
    while (true) {
      size_t tag = src_.find("{%", search);
      if (tag == std::string::npos) error(start, "missing end of raw directive");
      size_t q = tag + 2;
      char open_sign = (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ? src_[q] : 0;
      if (open_sign) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      q += 6;
      while (q < src_.size() && is_space(src_[q])) ++q;
      char close_sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) close_sign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) {
        search = tag + 2;
        continue;
      }
      std::string text = src_.substr(body, tag - body);
      apply_left_strip(text, open_sign, true, line_starting);
      if (!text.empty()) push_text(std::move(text), body);
      return after_end(q + 2, close_sign, true, line_starting);
    }
  }

  size_t lex_tag(size_t start, size_t p, bool block, bool& line_starting) {
    push(block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", start);
    int balance = 0;
    while (true) {
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (p >= src_.size())
        error(start, block ? "unexpected end of template, missing '%}'"
                           : "unexpected end of template, missing '}}'");
      if (balance == 0) {
        const char* close = block ? "%}" : "}}";
        char sign = 0;
        size_t q = p;
        if ((src_[q] == '-' || (block && src_[q] == '+')) && src_.compare(q + 1, 2, close) == 0) {
          sign = src_[q++];
        }
        if (src_.compare(q, 2, close) == 0) {
          push(block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", p);
          return after_end(q + 2, sign, block, line_starting);
        }
      }
      p = lex_token(p, balance);
    }
  }

  size_t lex_token(size_t p, int& balance) {
    char c = src_[p];
    if (is_name_start(c)) {
      size_t e = p;
      while (e < src_.size() && is_name_char(src_[e])) ++e;
      push(Token::Type::kName, src_.substr(p, e - p), p);
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
    if (c == '\'' || c == '"') return lex_string(p);
    static const char* kOps2[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kOps2) {
      if (src_.compare(p, 2, op) == 0) {
        push(Token::Type::kOp, op, p);
        return p + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) != std::string_view::npos) {
      if (c == '(' || c == '[' || c == '{') ++balance;
      if (c == ')' || c == ']' || c == '}') {
        if (balance == 0) error(p, std::string("unexpected '") + c + "'");
        --balance;
      }
      push(Token::Type::kOp, std::string(1, c), p);
      return p + 1;
    }
    error(p, std::string("unexpected char '") + c + "'");
  }

  size_t digits(size_t p, std::string& out) {
    while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                               (src_[p] == '_' && p + 1 < src_.size() &&
                                std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
      if (src_[p] != '_') out += src_[p];
      ++p;
    }
    return p;
  }

  size_t lex_number(size_t start) {
    std::string num;
    size_t p = digits(start, num);
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      num += '.';
      p = digits(p + 1, num);
      is_float = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      std::string exp = "e";
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) exp += src_[q++];
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        p = digits(q, exp);
        num += exp;
        is_float = true;
      }
    }
    Token t{is_float ? Token::Type::kFloat : Token::Type::kInt, num, 0, 0.0, 0, 0};
    set_pos(t, start);
    if (is_float) {
      t.fval = std::strtod(num.c_str(), nullptr);
    } else {
      errno = 0;
      t.ival = std::strtoll(num.c_str(), nullptr, 10);
      if (errno == ERANGE) error(start, "integer literal too large");
    }
    tokens_.push_back(std::move(t));
    return p;
  }

  size_t lex_string(size_t start) {
    char q = src_[start];
    std::string out;
    size_t p = start + 1;
    while (true) {
      if (p >= src_.size()) error(start, "unterminated string");
      char c = src_[p];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error(start, "unterminated string");
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n > src_.size()) error(p, "truncated escape");
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            char h = src_[p + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) error(p, "bad escape");
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10FFFF) error(p, "bad escape");
          append_utf8(out, cp);
          p += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k) {
              cp = cp * 8 + static_cast<uint32_t>(src_[p++] - '0');
            }
            append_utf8(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    push(Token::Type::kString, std::move(out), start);
    return p + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex_template(const std::string& source) { return Lexer(source).run(); }

}  // namespace tessera::tokenizer::jinja
