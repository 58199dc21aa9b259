// Jinja tests (`x is defined`, `n is divisibleby 3`, ...), following jinja2 3.1's definitions,
// including its quirks (Undefined counts as iterable and as a sequence; bools are numbers).
#include <algorithm>

#include "tessera/tokenizer/jinja_runtime.h"

namespace tessera::tokenizer::jinja {
namespace {

const Value kNone(nullptr);

bool is_int_like(const Value& v) { return v.is_int() || v.is_bool(); }

}  // namespace

bool has_test(const std::string& name) {
  static const char* kTests[] = {
      "defined", "undefined", "none",        "boolean", "false",    "true",     "integer",
      "float",   "number",    "string",      "mapping", "iterable", "sequence", "callable",
      "odd",     "even",      "divisibleby", "equalto", "eq",       "==",       "ne",
      "!=",      "lt",        "<",           "le",      "<=",       "gt",       ">",
      "ge",      ">=",        "in",          "sameas",  "lower",    "upper",    "escaped",
      "filter",  "test"};
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

bool apply_test(Runtime& rt, const std::string& n, const Value& v, const CallArgs& a) {
  const Value& x = arg(a, 0, "value", kNone);
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "boolean") return v.is_bool();
  if (n == "false") return v.is_bool() && !v.as_bool();
  if (n == "true") return v.is_bool() && v.as_bool();
  if (n == "integer") return v.is_int();
  if (n == "float") return v.is_float();
  if (n == "number") return v.is_number();
  if (n == "string") return v.is_string();
  if (n == "mapping") return v.is_dict() && !v.dict_ref().is_namespace;
  if (n == "iterable")
    return v.is_string() || v.is_list() || v.is_undefined() ||
           (v.is_dict() && !v.dict_ref().is_namespace);
  if (n == "sequence")
    return v.is_string() || v.is_list() || v.is_undefined() ||
           (v.is_dict() && !v.dict_ref().is_namespace);
  if (n == "callable") return v.is_callable();
  if (n == "odd" || n == "even") {
    Value m = binary_op(rt, "%", v, Value(static_cast<int64_t>(2)));
    return (n == "odd") == m.equals(Value(static_cast<int64_t>(1)));
  }
  if (n == "divisibleby") return binary_op(rt, "%", v, x).equals(Value(static_cast<int64_t>(0)));
  if (n == "equalto" || n == "eq" || n == "==") return v.equals(x);
  if (n == "ne" || n == "!=") return !v.equals(x);
  if (n == "lt" || n == "<") return compare_values(v, x) < 0;
  if (n == "le" || n == "<=") return compare_values(v, x) <= 0;
  if (n == "gt" || n == ">") return compare_values(v, x) > 0;
  if (n == "ge" || n == ">=") return compare_values(v, x) >= 0;
  if (n == "in") return contains(x, v);
  if (n == "sameas") {
    if (v.is_none() || x.is_none() || v.is_bool() || x.is_bool()) {
      return v.is_none() == x.is_none() && v.is_bool() == x.is_bool() && v.equals(x);
    }
    if (is_int_like(v) && is_int_like(x)) return v.equals(x);
    return v.is_list() && x.is_list()   ? &v.list_ref() == &x.list_ref()
           : v.is_dict() && x.is_dict() ? &v.dict_ref() == &x.dict_ref()
                                        : false;
  }
  if (n == "lower") {
    std::string s = v.to_str();
    return py_lower(s) == s && py_upper(s) != s;
  }
  if (n == "upper") {
    std::string s = v.to_str();
    return py_upper(s) == s && py_lower(s) != s;
  }
  if (n == "escaped") return false;
  if (n == "filter") return has_filter(x.to_str());
  if (n == "test") return has_test(x.to_str());
  runtime_error("no test named '" + n + "'");
}

}  // namespace tessera::tokenizer::jinja
