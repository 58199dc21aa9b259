// Jinja parser, template structure: text, output tags and statements (if/for/set/macro/call/
// filter/generation/break/continue). Expressions are in jinja_parser_expr.cpp.
#include "tessera/tokenizer/jinja_parser.h"

namespace tessera::tokenizer::jinja {

Body Parser::parse_body(const std::set<std::string>& ends, std::string& found) {
  DepthGuard g(this);
  Body body;
  while (true) {
    const Token& t = cur();
    if (t.type == T::kEof) {
      if (!ends.empty()) {
        error(t, detail::concat("unexpected end of template, expected '", *ends.rbegin(), "'"));
      }
      return body;
    }
    if (t.type == T::kText) {
      auto n = std::make_unique<Node>();
      n->kind = Node::Kind::kText;
      n->line = t.line;
      n->text = t.text;
      body.push_back(std::move(n));
      next();
    } else if (t.type == T::kVarBegin) {
      next();
      auto n = std::make_unique<Node>();
      n->kind = Node::Kind::kOutput;
      n->line = t.line;
      n->expr = parse_tuple(true);
      if (cur().type != T::kVarEnd)
        error(cur(), detail::concat("expected end of print statement, got ", describe(cur())));
      next();
      body.push_back(std::move(n));
    } else if (t.type == T::kBlockBegin) {
      next();
      if (cur().type != T::kName)
        error(cur(), detail::concat("expected a statement name, got ", describe(cur())));
      if (ends.count(cur().text)) {
        found = next().text;
        return body;
      }
      body.push_back(parse_statement());
    } else {
      error(t, detail::concat("unexpected ", describe(t)));
    }
  }
}

NodePtr Parser::parse_statement() {
  const Token& kw = next();
  auto n = std::make_unique<Node>();
  n->line = kw.line;
  const std::string& k = kw.text;
  std::string found;
  if (k == "if") {
    n->kind = Node::Kind::kIf;
    n->conds.push_back(parse_tuple(true));
    expect_block_end();
    while (true) {
      n->bodies.push_back(parse_body({"elif", "else", "endif"}, found));
      if (found == "elif") {
        n->conds.push_back(parse_tuple(true));
        expect_block_end();
        continue;
      }
      if (found == "else") {
        expect_block_end();
        n->else_body = parse_body({"endif"}, found);
      }
      expect_block_end();
      break;
    }
  } else if (k == "for") {
    n->kind = Node::Kind::kFor;
    bool paren = is_op("(");
    if (paren) next();
    n->targets.push_back(expect_name());
    while (is_op(",")) {
      next();
      if (cur().type != T::kName) break;
      n->targets.push_back(expect_name());
    }
    if (paren) expect_op(")");
    if (!is_name("in")) error(cur(), detail::concat("expected 'in', got ", describe(cur())));
    next();
    n->expr = parse_tuple(false);
    if (is_name("if")) {
      next();
      n->cond = parse_expression(true);
    }
    if (is_name("recursive")) error(cur(), "recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    n->body = parse_body({"else", "endfor"}, found);
    --loop_depth_;
    if (found == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"}, found);
    }
    expect_block_end();
  } else if (k == "set") {
    std::string first = expect_name();
    n->targets.push_back(first);
    if (is_op(".")) {
      next();
      n->targets.push_back(expect_name());
      n->attr_target = true;
    } else {
      while (is_op(",")) {
        next();
        n->targets.push_back(expect_name());
      }
    }
    if (is_op("=")) {
      next();
      n->kind = Node::Kind::kSet;
      n->expr = parse_tuple(true);
      expect_block_end();
    } else {
      if (n->attr_target || n->targets.size() != 1) error(cur(), "expected '='");
      n->kind = Node::Kind::kSetBlock;
      while (is_op("|")) {
        next();
        n->filters.push_back(parse_filter_call());
      }
      expect_block_end();
      n->body = parse_body({"endset"}, found);
      expect_block_end();
    }
  } else if (k == "macro") {
    n->kind = Node::Kind::kMacro;
    n->name = expect_name();
    parse_params(n->params);
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    n->body = parse_body({"endmacro"}, found);
    loop_depth_ = saved;
    expect_block_end();
  } else if (k == "call") {
    n->kind = Node::Kind::kCallBlock;
    if (is_op("(")) parse_params(n->params);
    n->expr = parse_expression(true);
    if (n->expr->kind != Expr::Kind::kCall) error(kw, "expected a call expression");
    expect_block_end();
    n->body = parse_body({"endcall"}, found);
    expect_block_end();
  } else if (k == "filter") {
    n->kind = Node::Kind::kFilterBlock;
    n->filters.push_back(parse_filter_call());
    while (is_op("|")) {
      next();
      n->filters.push_back(parse_filter_call());
    }
    expect_block_end();
    n->body = parse_body({"endfilter"}, found);
    expect_block_end();
  } else if (k == "generation") {
    n->kind = Node::Kind::kScope;
    expect_block_end();
    n->body = parse_body({"endgeneration"}, found);
    expect_block_end();
  } else if (k == "break" || k == "continue") {
    if (loop_depth_ == 0) error(kw, detail::concat("'", k, "' outside of a loop"));
    n->kind = k == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
    expect_block_end();
  } else {
    error(kw, detail::concat("unknown or unsupported tag '", k, "'"));
  }
  return n;
}

void Parser::parse_params(std::vector<std::pair<std::string, ExprPtr>>& params) {
  expect_op("(");
  while (!is_op(")")) {
    if (!params.empty()) expect_op(",");
    if (is_op(")")) break;
    std::string name = expect_name();
    ExprPtr def;
    if (is_op("=")) {
      next();
      def = parse_expression(true);
    } else if (!params.empty() && params.back().second) {
      error(cur(), "non-default argument follows default argument");
    }
    params.emplace_back(name, std::move(def));
  }
  next();
}

FilterCall Parser::parse_filter_call() {
  FilterCall f;
  f.line = cur().line;
  f.name = expect_name();
  while (is_op(".")) {
    next();
    f.name += '.';
    f.name += expect_name();
  }
  if (is_op("(")) parse_call_args(f.args, f.kwargs);
  return f;
}

std::unique_ptr<ParsedTemplate> parse_template(const std::string& source) {
  return Parser(lex_template(source)).run();
}

}  // namespace tessera::tokenizer::jinja
