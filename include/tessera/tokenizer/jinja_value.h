// Runtime values of the Jinja interpreter (tokenizer module). A Value models the Python object a
// jinja2 template would see: Undefined, None, bool, int, float, str, list/tuple, dict, namespace or
// a callable. Lists and dicts are shared by reference like Python objects, but the interpreter
// never mutates them (jinja2's ImmutableSandboxedEnvironment), except namespace attributes.
// Dicts keep insertion order, as Python dicts do. Values are owned by whoever holds them; a
// render owns all the values it creates.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tessera::tokenizer::jinja {

class Value;

struct Undefined {
  std::string hint;  // what was looked up, for the error raised when it is used
};

struct ListObj {
  std::vector<Value> items;
  bool tuple = false;  // prints as (a, b)
};

struct DictObj {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): attributes are assignable with `set ns.x = ...`
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> fn;
};

class Value {
 public:
  using List = std::shared_ptr<ListObj>;
  using Dict = std::shared_ptr<DictObj>;
  using Func = std::shared_ptr<Callable>;
  using Storage =
      std::variant<Undefined, std::nullptr_t, bool, int64_t, double, std::string, List, Dict, Func>;

  Value() : v_(Undefined{}) {}
  Value(std::nullptr_t) : v_(nullptr) {}
  Value(bool b) : v_(b) {}
  Value(int64_t i) : v_(i) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::move(l)) {}
  Value(Dict d) : v_(std::move(d)) {}
  Value(Func f) : v_(std::move(f)) {}

  static Value undefined(std::string hint = {}) {
    return Value(Storage(Undefined{std::move(hint)}));
  }
  static Value list(std::vector<Value> items = {}, bool tuple = false);
  static Value dict();
  static Value function(std::string name, std::function<Value(const CallArgs&)> fn);
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }  // bool excluded
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_list() const { return std::holds_alternative<List>(v_); }
  bool is_dict() const { return std::holds_alternative<Dict>(v_); }
  bool is_callable() const { return std::holds_alternative<Func>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const;    // bool or int
  double as_double() const;  // bool, int or float
  const std::string& str_ref() const { return std::get<std::string>(v_); }
  const ListObj& list_ref() const { return *std::get<List>(v_); }
  const DictObj& dict_ref() const { return *std::get<Dict>(v_); }
  DictObj& dict_mut() const { return *std::get<Dict>(v_); }
  const Callable& func_ref() const { return *std::get<Func>(v_); }
  const Undefined& undef_ref() const { return std::get<Undefined>(v_); }

  // Python truthiness (Undefined is false).
  bool truthy() const;
  // str(x) as Python prints it; Undefined prints empty.
  std::string to_str() const;
  // repr(x) as Python prints it (used inside list/dict printing).
  std::string repr() const;
  // Python ==, deep for containers; Undefined equals only Undefined.
  bool equals(const Value& other) const;
  const char* type_name() const;

 private:
  explicit Value(Storage s) : v_(std::move(s)) {}
  Storage v_;
};

struct JsonDumpOptions {
  int indent = -1;         // < 0: single line
  std::string indent_str;  // used when set (a string indent)
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// json.dumps(value) with Python's formatting; throws tessera::Error for non-serializable values.
std::string dump_json(const Value& v, const JsonDumpOptions& opt);
// Python float repr (shortest round trip, "1.0", "1e+16", "inf", "nan").
std::string float_repr(double d);

// UTF-8 helpers: strings are indexed by code point like Python str.
std::vector<std::string> utf8_chars(std::string_view s);
size_t utf8_length(std::string_view s);

}  // namespace tessera::tokenizer::jinja
