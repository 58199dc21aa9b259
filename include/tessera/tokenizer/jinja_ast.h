// Syntax tree of a parsed Jinja template (tokenizer module). The parser (jinja_parser.cpp) builds
// it once; the renderer only reads it, so one tree can be rendered concurrently. Nodes own their
// children through unique_ptr; a Template owns the root.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/tokenizer/jinja_value.h"

namespace tessera::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // value
    kName,     // name
    kList,     // args
    kTuple,    // args
    kDict,     // args: key0, val0, key1, val1, ...
    kGetAttr,  // a . name
    kGetItem,  // a [ b ]
    kSlice,    // a [ args[0] : args[1] : args[2] ] (null entries = omitted)
    kCall,     // a ( args, kwargs )
    kFilter,   // a | name ( args, kwargs )
    kTest,     // a is [not] name ( args )
    kUnary,    // op a   (op: "-", "+", "not")
    kBinary,   // a op b (op: + - * / // % ** ~ and or)
    kCompare,  // a ops[0] args[0] ops[1] args[1] ...  (== != < > <= >= in notin)
    kCond,     // a if b else c  (c may be null)
  };
  Kind kind;
  int line = 0;
  int col = 0;
  std::string name;  // name / attribute / filter / test / operator
  Value value;       // literal
  bool negated = false;
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // compare operators
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct FilterCall {
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  int line = 0;
};

struct Node {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // conds[i] -> bodies[i]; else_body
    kFor,          // targets in expr [if cond]: body; else_body
    kSet,          // targets (or ns.attr) = expr
    kSetBlock,     // {% set name %}body{% endset %} with optional filters
    kMacro,        // name(params) body
    kCallBlock,    // {% call(params) expr %}body{% endcall %}
    kFilterBlock,  // {% filter f %}body{% endfilter %}
    kBreak,
    kContinue,
    kScope,  // generation blocks: body rendered in place
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // for-loop filter
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::vector<std::string> targets;  // for / set targets; kSet with attr: targets = {ns, attr}
  bool attr_target = false;
  std::string name;                                     // macro name
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro/call params with defaults
  std::vector<FilterCall> filters;                      // filter block / set block filters
};

struct ParsedTemplate {
  Body body;
};

// Parses template source into a tree; throws tessera::Error(kInvalidArgument) with line/column.
std::unique_ptr<ParsedTemplate> parse_template(const std::string& source);

}  // namespace tessera::tokenizer::jinja
