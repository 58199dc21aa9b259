// Jinja parser, expressions: literals, names, lists/dicts/tuples, attribute/item/slice access,
// calls, filters, tests and operators with jinja2's precedence.
#include "tessera/tokenizer/jinja_parser.h"

namespace tessera::tokenizer::jinja {

ExprPtr Parser::parse_tuple(bool with_condexpr, bool explicit_parens) {
  const Token& start = cur();
  std::vector<ExprPtr> items;
  bool saw_comma = false;
  while (true) {
    if (!items.empty()) {
      if (!is_op(",")) break;
      next();
      saw_comma = true;
    }
    if (cur().type == T::kVarEnd || cur().type == T::kBlockEnd || is_op(")") ||
        (is_name("in") && !items.empty())) {
      break;
    }
    items.push_back(parse_expression(with_condexpr));
  }
  if (!saw_comma) {
    if (items.empty()) {
      if (explicit_parens) return make_seq(Expr::Kind::kTuple, start, std::move(items));
      error(cur(), detail::concat("expected an expression, got ", describe(cur())));
    }
    return std::move(items[0]);
  }
  return make_seq(Expr::Kind::kTuple, start, std::move(items));
}

ExprPtr Parser::make_seq(Expr::Kind k, const Token& at, std::vector<ExprPtr> items) {
  auto e = make(k, at);
  e->args = std::move(items);
  return e;
}

ExprPtr Parser::parse_expression(bool with_condexpr) {
  DepthGuard g(this);
  if (!with_condexpr) return parse_or();
  ExprPtr e = parse_or();
  while (is_name("if")) {
    const Token& at = next();
    auto c = make(Expr::Kind::kCond, at);
    c->b = parse_or();
    c->a = std::move(e);
    if (is_name("else")) {
      next();
      c->c = parse_expression(true);
    }
    e = std::move(c);
  }
  return e;
}

ExprPtr Parser::binary(const Token& at, const std::string& op, ExprPtr l, ExprPtr r) {
  auto e = make(Expr::Kind::kBinary, at);
  e->name = op;
  e->a = std::move(l);
  e->b = std::move(r);
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    const Token& at = next();
    e = binary(at, "or", std::move(e), parse_and());
  }
  return e;
}

ExprPtr Parser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    const Token& at = next();
    e = binary(at, "and", std::move(e), parse_not());
  }
  return e;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    DepthGuard g(this);
    const Token& at = next();
    auto e = make(Expr::Kind::kUnary, at);
    e->name = "not";
    e->a = parse_not();
    return e;
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  const Token& at = cur();
  ExprPtr first = parse_math1();
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (cur().type == T::kOp && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                 cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
      op = next().text;
    } else if (is_name("in")) {
      next();
      op = "in";
    } else if (is_name("not") && peek().type == T::kName && peek().text == "in") {
      next();
      next();
      op = "notin";
    } else {
      break;
    }
    if (!cmp) {
      cmp = make(Expr::Kind::kCompare, at);
      cmp->a = std::move(first);
    }
    cmp->ops.push_back(op);
    cmp->args.push_back(parse_math1());
  }
  return cmp ? std::move(cmp) : std::move(first);
}

ExprPtr Parser::parse_math1() {
  ExprPtr e = parse_concat();
  while (is_op("+") || is_op("-")) {
    const Token& at = next();
    e = binary(at, at.text, std::move(e), parse_concat());
  }
  return e;
}

ExprPtr Parser::parse_concat() {
  ExprPtr e = parse_math2();
  while (is_op("~")) {
    const Token& at = next();
    e = binary(at, "~", std::move(e), parse_math2());
  }
  return e;
}

ExprPtr Parser::parse_math2() {
  ExprPtr e = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const Token& at = next();
    e = binary(at, at.text, std::move(e), parse_pow());
  }
  return e;
}

ExprPtr Parser::parse_pow() {
  ExprPtr e = parse_unary(true);
  while (is_op("**")) {
    const Token& at = next();
    e = binary(at, "**", std::move(e), parse_unary(true));
  }
  return e;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  DepthGuard g(this);
  ExprPtr e;
  if (is_op("-") || is_op("+")) {
    const Token& at = next();
    e = make(Expr::Kind::kUnary, at);
    e->name = at.text;
    e->a = parse_unary(false);
  } else {
    e = parse_primary();
  }
  e = parse_postfix(std::move(e));
  if (with_filter) e = parse_filter_expr(std::move(e));
  return e;
}

ExprPtr Parser::parse_primary() {
  const Token& t = cur();
  if (t.type == T::kName) {
    next();
    if (t.text == "true" || t.text == "True") return literal(t, Value(true));
    if (t.text == "false" || t.text == "False") return literal(t, Value(false));
    if (t.text == "none" || t.text == "None") return literal(t, Value(nullptr));
    auto e = make(Expr::Kind::kName, t);
    e->name = t.text;
    return e;
  }
  if (t.type == T::kString) {
    std::string s = next().text;
    while (cur().type == T::kString) s += next().text;
    return literal(t, Value(std::move(s)));
  }
  if (t.type == T::kInt) return literal(t, Value(next().ival));
  if (t.type == T::kFloat) return literal(t, Value(next().fval));
  if (is_op("(")) {
    next();
    ExprPtr e = parse_tuple(true, true);
    expect_op(")");
    return e;
  }
  if (is_op("[")) {
    next();
    std::vector<ExprPtr> items;
    while (!is_op("]")) {
      if (!items.empty()) expect_op(",");
      if (is_op("]")) break;
      items.push_back(parse_expression(true));
    }
    next();
    return make_seq(Expr::Kind::kList, t, std::move(items));
  }
  if (is_op("{")) {
    next();
    std::vector<ExprPtr> items;
    while (!is_op("}")) {
      if (!items.empty()) expect_op(",");
      if (is_op("}")) break;
      items.push_back(parse_expression(true));
      expect_op(":");
      items.push_back(parse_expression(true));
    }
    next();
    return make_seq(Expr::Kind::kDict, t, std::move(items));
  }
  error(t, detail::concat("unexpected ", describe(t)));
}

ExprPtr Parser::literal(const Token& at, Value v) {
  auto e = make(Expr::Kind::kLiteral, at);
  e->value = std::move(v);
  return e;
}

ExprPtr Parser::parse_postfix(ExprPtr e) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      e = parse_subscript(std::move(e));
    } else if (is_op("(")) {
      e = parse_call(std::move(e));
    } else {
      return e;
    }
  }
}

ExprPtr Parser::parse_filter_expr(ExprPtr e) {
  while (true) {
    if (is_op("|")) {
      const Token& at = next();
      FilterCall f = parse_filter_call();
      auto n = make(Expr::Kind::kFilter, at);
      n->name = f.name;
      n->a = std::move(e);
      n->args = std::move(f.args);
      n->kwargs = std::move(f.kwargs);
      e = std::move(n);
    } else if (is_name("is")) {
      e = parse_test(std::move(e));
    } else if (is_op("(")) {
      e = parse_call(std::move(e));
    } else {
      return e;
    }
  }
}

ExprPtr Parser::parse_test(ExprPtr e) {
  const Token& at = next();
  auto n = make(Expr::Kind::kTest, at);
  if (is_name("not")) {
    next();
    n->negated = true;
  }
  n->name = expect_name();
  while (is_op(".")) {
    next();
    n->name += '.';
    n->name += expect_name();
  }
  n->a = std::move(e);
  const Token& c = cur();
  if (is_op("(")) {
    parse_call_args(n->args, n->kwargs);
  } else if ((c.type == T::kName || c.type == T::kString || c.type == T::kInt ||
              c.type == T::kFloat || is_op("[") || is_op("{")) &&
             !(c.type == T::kName && (c.text == "else" || c.text == "or" || c.text == "and"))) {
    if (c.type == T::kName && c.text == "is") error(c, "You cannot chain multiple tests with is");
    n->args.push_back(parse_postfix(parse_primary()));
  }
  return n;
}

ExprPtr Parser::parse_subscript(ExprPtr e) {
  const Token& at = next();
  if (at.text == ".") {
    if (cur().type == T::kInt) {
      auto n = make(Expr::Kind::kGetItem, at);
      n->a = std::move(e);
      n->b = literal(cur(), Value(next().ival));
      return n;
    }
    auto n = make(Expr::Kind::kGetAttr, at);
    n->a = std::move(e);
    n->name = expect_name();
    return n;
  }
  // "[" index or slice "]"
  std::vector<ExprPtr> parts(3);
  bool slice = false;
  int idx = 0;
  while (!is_op("]")) {
    if (is_op(":")) {
      next();
      slice = true;
      if (++idx > 2) error(cur(), "invalid slice");
      continue;
    }
    if (parts[static_cast<size_t>(idx)])
      error(cur(), detail::concat("expected ']' or ':', got ", describe(cur())));
    parts[static_cast<size_t>(idx)] = parse_expression(true);
  }
  next();
  if (!slice) {
    if (!parts[0]) error(at, "expected a subscript");
    auto n = make(Expr::Kind::kGetItem, at);
    n->a = std::move(e);
    n->b = std::move(parts[0]);
    return n;
  }
  auto n = make(Expr::Kind::kSlice, at);
  n->a = std::move(e);
  n->args = std::move(parts);
  return n;
}

ExprPtr Parser::parse_call(ExprPtr e) {
  const Token& at = cur();
  auto n = make(Expr::Kind::kCall, at);
  n->a = std::move(e);
  parse_call_args(n->args, n->kwargs);
  return n;
}

}  // namespace tessera::tokenizer::jinja
