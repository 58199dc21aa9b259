// Jinja lexer (tokenizer module): splits template source into text and tag tokens, applying
// jinja2's whitespace rules as Hugging Face configures them (trim_blocks and lstrip_blocks on,
// "-"/"+" markers, one trailing newline dropped, newlines normalized). Stateless; the token list
// it returns is owned by the caller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::tokenizer::jinja {

struct Token {
  enum class Type {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof,
  };
  Type type;
  std::string text;  // text data, name, operator or decoded string literal
  int64_t ival = 0;
  double fval = 0.0;
  int line = 1;
  int col = 1;
};

// Throws tessera::Error(kInvalidArgument) with line/column for unterminated tags or strings and
// characters that cannot start a token.
std::vector<Token> lex_template(const std::string& source);

}  // namespace tessera::tokenizer::jinja
