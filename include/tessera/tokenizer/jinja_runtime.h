// Jinja runtime helpers shared by the renderer, filters and tests (tokenizer module): Python
// semantics of attribute/item access, operators, iteration and comparisons, plus the per-render
// limit accounting. A Runtime belongs to one render call.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tessera/tokenizer/jinja.h"
#include "tessera/tokenizer/jinja_value.h"

namespace tessera::tokenizer::jinja {

struct Runtime {
  const TemplateLimits& limits;
  size_t iterations = 0;
  int depth = 0;

  // Every string a template builds is capped like the output, so `'x' * 10**9` fails fast.
  void check_size(size_t bytes) const;
  void count_iteration();
};

// A template error (undefined use, type error, raise_exception): tessera::Error(kInvalidArgument).
[[noreturn]] void runtime_error(const std::string& msg);
// Raises the error stored in an Undefined (what was looked up and why it failed).
[[noreturn]] void undefined_error(const Value& v);

Value get_attr(Runtime& rt, const Value& obj, const std::string& name);
Value get_item(Runtime& rt, const Value& obj, const Value& key);
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value binary_op(Runtime& rt, const std::string& op, const Value& a, const Value& b);
Value unary_op(const std::string& op, const Value& a);
// Python comparison: -1/0/1; throws for unorderable types.
int compare_values(const Value& a, const Value& b);
bool compare_op(const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
// Items of an iterable: list items, dict keys, string characters; Undefined is empty.
std::vector<Value> iterate(const Value& v);
// Python len(); throws for values without a length.
size_t py_len(const Value& v);
Value call_value(Runtime& rt, const Value& fn, const CallArgs& args);

Value apply_filter(Runtime& rt, const std::string& name, const Value& input, const CallArgs& args);
bool apply_test(Runtime& rt, const std::string& name, const Value& v, const CallArgs& args);
bool has_filter(const std::string& name);
using FilterFn = Value (*)(Runtime&, const Value&, const CallArgs&);
// Filters over sequences and mappings (jinja_filters_seq.cpp); apply_filter consults them too.
const std::map<std::string, FilterFn>& sequence_filters();
// jinja2's attribute lookup used by map/sort/...: "a.b.0" walks attributes and items.
Value lookup_attr(Runtime& rt, const Value& item, const Value& attribute);
bool has_test(const std::string& name);

// String helpers with Python semantics (ASCII case mapping, unicode whitespace).
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
std::string py_lower(std::string s);
std::string py_upper(std::string s);

// Argument `i` of a filter or method call, given by position or by keyword `name`, else `dflt`.
inline const Value& arg(const CallArgs& a, size_t i, const char* name, const Value& dflt) {
  if (i < a.pos.size()) return a.pos[i];
  if (const Value* v = a.kwarg(name)) return *v;
  return dflt;
}

}  // namespace tessera::tokenizer::jinja
