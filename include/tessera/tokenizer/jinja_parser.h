// Jinja parser internals (tokenizer module): a recursive-descent parser over the lexer's tokens
// with jinja2's operator precedence (condexpr < or < and < not < compare < +,- < ~ < *,/,//,% <
// ** < unary < postfix/filters). Nesting is bounded so hostile input cannot exhaust the stack.
// A Parser is used once, by parse_template(); it owns its token list.
#pragma once

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja_ast.h"
#include "tessera/tokenizer/jinja_lexer.h"

namespace tessera::tokenizer::jinja {

constexpr int kMaxParseDepth = 200;

class Parser {
 public:
  using T = Token::Type;
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<ParsedTemplate> run() {
    auto tree = std::make_unique<ParsedTemplate>();
    std::string end;
    tree->body = parse_body({}, end);
    return tree;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxParseDepth) p_->error(p_->cur(), "template nested too deeply");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }

  [[noreturn]] void error(const Token& t, const std::string& msg) const {
    fail(ErrorCode::kInvalidArgument, "chat template syntax error at line ", t.line, ", column ",
         t.col, ": ", msg);
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case T::kEof:
        return "end of template";
      case T::kBlockEnd:
        return "end of statement block";
      case T::kVarEnd:
        return "end of print statement";
      case T::kString:
        return "string";
      case T::kInt:
      case T::kFloat:
        return "number";
      default:
        return detail::concat("'", t.text, "'");
    }
  }

  bool is_op(const char* op) const { return cur().type == T::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == T::kName && cur().text == n; }
  void expect_op(const char* op) {
    if (!is_op(op))
      error(cur(), std::string("expected '") + op + detail::concat("', got ", describe(cur())));
    next();
  }
  std::string expect_name() {
    if (cur().type != T::kName)
      error(cur(), detail::concat("expected a name, got ", describe(cur())));
    return next().text;
  }
  void expect_block_end() {
    if (cur().type != T::kBlockEnd)
      error(cur(), detail::concat("expected end of statement block, got ", describe(cur())));
    next();
  }

  ExprPtr make(Expr::Kind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // ---- template structure ----

  Body parse_body(const std::set<std::string>& ends, std::string& found);
  NodePtr parse_statement();
  void parse_params(std::vector<std::pair<std::string, ExprPtr>>& params);
  FilterCall parse_filter_call();

  // ---- expressions ----

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens = false);
  ExprPtr make_seq(Expr::Kind k, const Token& at, std::vector<ExprPtr> items);
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr binary(const Token& at, const std::string& op, ExprPtr l, ExprPtr r);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr literal(const Token& at, Value v);
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_filter_expr(ExprPtr e);
  ExprPtr parse_test(ExprPtr e);
  ExprPtr parse_subscript(ExprPtr e);
  ExprPtr parse_call(ExprPtr e);
  void parse_call_args(std::vector<ExprPtr>& args,
                       std::vector<std::pair<std::string, ExprPtr>>& kwargs) {
    DepthGuard g(this);
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) error(cur(), "*args/**kwargs calls are not supported");
      if (cur().type == T::kName && peek().type == T::kOp && peek().text == "=") {
        std::string name = next().text;
        next();
        kwargs.emplace_back(name, parse_expression(true));
      } else {
        if (!kwargs.empty()) error(cur(), "positional argument follows keyword argument");
        args.push_back(parse_expression(true));
      }
    }
    next();
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace tessera::tokenizer::jinja
