// Python semantics for the Jinja runtime: item access, slicing, operators, comparisons,
// membership, iteration and len(), as jinja2's sandbox evaluates them.
#include <cmath>
#include <limits>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja_runtime.h"

namespace tessera::tokenizer::jinja {

void Runtime::check_size(size_t bytes) const {
  if (bytes > limits.max_output_bytes) {
    fail(ErrorCode::kResourceExhausted, "chat template: output exceeds ", limits.max_output_bytes,
         " bytes");
  }
}

void Runtime::count_iteration() {
  if (++iterations > limits.max_loop_iterations) {
    fail(ErrorCode::kResourceExhausted, "chat template: more than ", limits.max_loop_iterations,
         " loop iterations");
  }
}

void runtime_error(const std::string& msg) {
  fail(ErrorCode::kInvalidArgument, "chat template error: ", msg);
}

void undefined_error(const Value& v) {
  const std::string& hint = v.is_undefined() ? v.undef_ref().hint : std::string();
  runtime_error(hint.empty() ? "value is undefined" : hint);
}

namespace {
std::string type_str(const Value& v) { return std::string("'") + v.type_name() + "'"; }

// Python index normalisation for a sequence of length n; false when out of range.
bool norm_index(int64_t& i, size_t n) {
  if (i < 0) i += static_cast<int64_t>(n);
  return i >= 0 && i < static_cast<int64_t>(n);
}

int64_t checked(bool overflow, int64_t v) {
  if (overflow) fail(ErrorCode::kOutOfRange, "chat template: integer overflow");
  return v;
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value repeat(Runtime& rt, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.str_ref();
    if (!s.empty()) rt.check_size(s.size() * static_cast<size_t>(std::min<int64_t>(n, 1 << 30)));
    std::string out;
    for (int64_t i = 0; i < n && !s.empty(); ++i) out += s;
    return Value(std::move(out));
  }
  const auto& l = seq.list_ref();
  if (!l.items.empty() && static_cast<size_t>(n) * l.items.size() > rt.limits.max_loop_iterations) {
    fail(ErrorCode::kResourceExhausted, "chat template: list repetition too large");
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), l.items.begin(), l.items.end());
  return Value::list(std::move(out), l.tuple);
}
}  // namespace

Value get_item(Runtime& rt, const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = obj.dict_ref().find(key.str_ref())) return *v;
      return get_attr(rt, obj, key.str_ref());
    }
    return Value::undefined(
        detail::concat("'", obj.type_name(), " object' has no attribute ", key.repr()));
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const auto& items = obj.list_ref().items;
      if (norm_index(i, items.size())) return items[static_cast<size_t>(i)];
      return Value::undefined(std::string(obj.type_name()) + " object has no element " +
                              std::to_string(key.as_int()));
    }
    auto chars = utf8_chars(obj.str_ref());
    if (norm_index(i, chars.size())) return Value(chars[static_cast<size_t>(i)]);
    return Value::undefined("str object has no element " + std::to_string(key.as_int()));
  }
  if (key.is_string()) return get_attr(rt, obj, key.str_ref());
  return Value::undefined(std::string(obj.type_name()) + " object has no element " + key.repr());
}

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) undefined_error(obj);
  auto opt = [](const Value& v, int64_t dflt) {
    if (v.is_undefined() || v.is_none()) return dflt;
    if (!v.is_int() && !v.is_bool()) runtime_error("slice indices must be integers or None");
    return v.as_int();
  };
  int64_t st = opt(step, 1);
  if (st == 0) runtime_error("slice step cannot be zero");
  std::vector<std::string> chars;
  size_t n;
  if (obj.is_string()) {
    chars = utf8_chars(obj.str_ref());
    n = chars.size();
  } else if (obj.is_list()) {
    n = obj.list_ref().items.size();
  } else {
    runtime_error(type_str(obj) + " object is not subscriptable");
  }
  auto len = static_cast<int64_t>(n);
  auto adjust = [&](const Value& v, bool is_start) {
    int64_t lo = st < 0 ? -1 : 0, hi = st < 0 ? len - 1 : len;
    if (v.is_undefined() || v.is_none())
      return st < 0 ? (is_start ? hi : lo) : (is_start ? lo : hi);
    int64_t i = opt(v, 0);
    if (i < 0) {
      i += len;
      if (i < lo) i = lo;
    } else if (i > hi) {
      i = hi;
    }
    return i;
  };
  int64_t b = adjust(start, true), e = adjust(stop, false);
  std::vector<size_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(static_cast<size_t>(i));
  if (obj.is_string()) {
    std::string out;
    for (size_t i : idx) out += chars[i];
    return Value(std::move(out));
  }
  std::vector<Value> out;
  for (size_t i : idx) out.push_back(obj.list_ref().items[i]);
  return Value::list(std::move(out), obj.list_ref().tuple);
}

Value unary_op(const std::string& op, const Value& a) {
  if (op == "not") return Value(!a.truthy());
  if (a.is_undefined()) undefined_error(a);
  if (!a.is_number()) runtime_error("bad operand type for unary " + op + ": " + type_str(a));
  if (op == "+") return a.is_float() ? a : Value(a.as_int());
  if (a.is_float()) return Value(-a.as_double());
  return Value(checked(a.as_int() == std::numeric_limits<int64_t>::min(), -a.as_int()));
}

Value binary_op(Runtime& rt, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = a.to_str();
    std::string t = b.to_str();
    rt.check_size(s.size() + t.size());
    return Value(s + t);
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  auto unsupported = [&]() -> Value {
    runtime_error("unsupported operand type(s) for " + op + ": " + type_str(a) + " and " +
                  type_str(b));
  };
  if (a.is_number() && b.is_number()) {
    bool fl = a.is_float() || b.is_float();
    if (op == "/") {
      if (b.as_double() == 0) runtime_error("division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (fl) {
      double x = a.as_double(), y = b.as_double();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "**") return Value(std::pow(x, y));
      if (y == 0) runtime_error("float division by zero");
      if (op == "//") return Value(std::floor(x / y));
      if (op == "%") return Value(py_fmod(x, y));
      return unsupported();
    }
    int64_t x = a.as_int(), y = b.as_int(), r = 0;
    // Compute before reading r: argument evaluation order is unspecified.
    if (op == "+") {
      bool ovf = __builtin_add_overflow(x, y, &r);
      return Value(checked(ovf, r));
    }
    if (op == "-") {
      bool ovf = __builtin_sub_overflow(x, y, &r);
      return Value(checked(ovf, r));
    }
    if (op == "*") {
      bool ovf = __builtin_mul_overflow(x, y, &r);
      return Value(checked(ovf, r));
    }
    if (op == "**") {
      if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      int64_t acc = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(acc, x, &acc)) checked(true, 0);
        if (acc == 0 || acc == 1) break;
      }
      if (acc == -1 || (x == -1)) acc = (y % 2 == 0) ? 1 : x;  // -1 ** y without looping
      return Value(acc);
    }
    if (y == 0) runtime_error("integer division or modulo by zero");
    if (x == std::numeric_limits<int64_t>::min() && y == -1) checked(true, 0);
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    if (op == "//") return Value(q);
    if (op == "%") return Value(m);
    return unsupported();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      rt.check_size(a.str_ref().size() + b.str_ref().size());
      return Value(a.str_ref() + b.str_ref());
    }
    if (a.is_list() && b.is_list() && a.list_ref().tuple == b.list_ref().tuple) {
      std::vector<Value> out = a.list_ref().items;
      out.insert(out.end(), b.list_ref().items.begin(), b.list_ref().items.end());
      return Value::list(std::move(out), a.list_ref().tuple);
    }
    if (a.is_string())
      runtime_error("can only concatenate str (not \"" + std::string(b.type_name()) + "\") to str");
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool()))
      return repeat(rt, a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool()))
      return repeat(rt, b, a.as_int());
  }
  if (op == "%" && a.is_string()) runtime_error("printf-style string formatting is not supported");
  return unsupported();
}

int compare_values(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str_ref().compare(b.str_ref());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const auto &x = a.list_ref().items, &y = b.list_ref().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!x[i].equals(y[i])) return compare_values(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  runtime_error("'<' not supported between instances of " + type_str(a) + " and " + type_str(b));
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return a.equals(b);
  if (op == "!=") return !a.equals(b);
  if (op == "in") return contains(b, a);
  if (op == "notin") return !contains(b, a);
  int c = compare_values(a, b);
  if (op == "<") return c < 0;
  if (op == ">") return c > 0;
  if (op == "<=") return c <= 0;
  return c >= 0;
}

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (item.is_undefined()) undefined_error(item);
    if (!item.is_string())
      runtime_error("'in <string>' requires string as left operand, not " +
                    std::string(item.type_name()));
    return container.str_ref().find(item.str_ref()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const auto& v : container.list_ref().items) {
      if (v.equals(item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.dict_ref().find(item.str_ref());
  if (container.is_undefined()) return false;
  runtime_error("argument of type " + type_str(container) + " is not iterable");
}

std::vector<Value> iterate(const Value& v) {
  if (v.is_list()) return v.list_ref().items;
  if (v.is_undefined()) return {};
  if (v.is_dict() && !v.dict_ref().is_namespace) {
    std::vector<Value> keys;
    for (const auto& kv : v.dict_ref().items) keys.emplace_back(kv.first);
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> out;
    for (auto& c : utf8_chars(v.str_ref())) out.emplace_back(std::move(c));
    return out;
  }
  runtime_error(type_str(v) + " object is not iterable");
}

size_t py_len(const Value& v) {
  if (v.is_string()) return utf8_length(v.str_ref());
  if (v.is_list()) return v.list_ref().items.size();
  if (v.is_dict() && !v.dict_ref().is_namespace) return v.dict_ref().items.size();
  if (v.is_undefined()) return 0;
  runtime_error("object of type " + type_str(v) + " has no len()");
}

Value call_value(Runtime& rt, const Value& fn, const CallArgs& args) {
  if (fn.is_undefined()) undefined_error(fn);
  if (!fn.is_callable()) runtime_error(type_str(fn) + " object is not callable");
  (void)rt;
  return fn.func_ref().fn(args);
}

}  // namespace tessera::tokenizer::jinja
