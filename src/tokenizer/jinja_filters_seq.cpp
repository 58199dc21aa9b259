// Jinja filters over sequences and mappings (first/last/join/map/select/sort/unique/dictsort/
// min/max/sum, ...), following jinja2 3.1. Generators (map, select, ...) are materialised as
// lists, which chat templates consume through |list, |join, |first or a loop anyway.
#include <algorithm>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja_runtime.h"

namespace tessera::tokenizer::jinja {
namespace {

const Value kNone(nullptr);
const Value kFalse(false);
const Value kEmpty(std::string{});

Value f_first(Runtime&, const Value& v, const CallArgs&) {
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Runtime&, const Value& v, const CallArgs&) {
  if (!v.is_list() && !v.is_string())
    runtime_error(std::string("'") + v.type_name() + "' object is not reversible");
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_join(Runtime& rt, const Value& v, const CallArgs& a) {
  std::string sep = arg(a, 0, "d", kEmpty).to_str();
  const Value& attribute = arg(a, 1, "attribute", kNone);
  std::string out;
  bool first = true;
  for (const auto& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += (attribute.is_none() ? item : lookup_attr(rt, item, attribute)).to_str();
    rt.check_size(out.size());
  }
  return Value(std::move(out));
}

Value f_list(Runtime&, const Value& v, const CallArgs&) { return Value::list(iterate(v)); }

Value f_items(Runtime& rt, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::list();
  if (!v.is_dict() || v.dict_ref().is_namespace)
    runtime_error("Can only get item pairs from a mapping.");
  return call_value(rt, get_attr(rt, v, "items"), {});
}

// map/select/reject share the "test or filter name plus extra args" calling convention.
CallArgs rest_args(const CallArgs& a, size_t from) {
  CallArgs r;
  for (size_t i = from; i < a.pos.size(); ++i) r.pos.push_back(a.pos[i]);
  r.kw = a.kw;
  return r;
}

Value f_map(Runtime& rt, const Value& v, const CallArgs& a) {
  std::vector<Value> out;
  if (const Value* attribute = a.kwarg("attribute")) {
    const Value* dflt = a.kwarg("default");
    for (const auto& item : iterate(v)) {
      Value r = lookup_attr(rt, item, *attribute);
      out.push_back(r.is_undefined() && dflt ? *dflt : r);
    }
    return Value::list(std::move(out));
  }
  if (a.pos.empty()) runtime_error("map requires a filter argument");
  std::string name = a.pos[0].to_str();
  CallArgs rest = rest_args(a, 1);
  for (const auto& item : iterate(v)) out.push_back(apply_filter(rt, name, item, rest));
  return Value::list(std::move(out));
}

Value select_impl(Runtime& rt, const Value& v, const CallArgs& a, bool attr, bool want) {
  std::vector<Value> out;
  size_t off = attr ? 1 : 0;
  if (attr && a.pos.empty()) runtime_error("Missing parameter for attribute name");
  for (const auto& item : iterate(v)) {
    Value x = attr ? lookup_attr(rt, item, a.pos[0]) : item;
    bool ok;
    if (a.pos.size() > off) {
      ok = apply_test(rt, a.pos[off].to_str(), x, rest_args(a, off + 1));
    } else {
      ok = x.truthy();
    }
    if (ok == want) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_select(Runtime& rt, const Value& v, const CallArgs& a) {
  return select_impl(rt, v, a, false, true);
}

Value f_reject(Runtime& rt, const Value& v, const CallArgs& a) {
  return select_impl(rt, v, a, false, false);
}

Value f_selectattr(Runtime& rt, const Value& v, const CallArgs& a) {
  return select_impl(rt, v, a, true, true);
}

Value f_rejectattr(Runtime& rt, const Value& v, const CallArgs& a) {
  return select_impl(rt, v, a, true, false);
}

Value sort_key(Runtime& rt, const Value& item, const Value& attribute, bool case_sensitive) {
  Value k = attribute.is_none() ? item : lookup_attr(rt, item, attribute);
  if (!case_sensitive && k.is_string()) return Value(py_lower(k.str_ref()));
  return k;
}

Value f_unique(Runtime& rt, const Value& v, const CallArgs& a) {
  bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
  const Value& attribute = arg(a, 1, "attribute", kNone);
  std::vector<Value> out, seen;
  for (const auto& item : iterate(v)) {
    Value k = sort_key(rt, item, attribute, cs);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(k); })) {
      seen.push_back(k);
      out.push_back(item);
    }
  }
  return Value::list(std::move(out));
}

Value f_reverse(Runtime&, const Value& v, const CallArgs&) {
  if (v.is_string()) {
    auto chars = utf8_chars(v.str_ref());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value(std::move(out));
  }
  auto items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_sort(Runtime& rt, const Value& v, const CallArgs& a) {
  bool rev = arg(a, 0, "reverse", kFalse).truthy();
  bool cs = arg(a, 1, "case_sensitive", kFalse).truthy();
  const Value& attribute = arg(a, 2, "attribute", kNone);
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& item : iterate(v)) keyed.emplace_back(sort_key(rt, item, attribute, cs), item);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? compare_values(y.first, x.first) < 0 : compare_values(x.first, y.first) < 0;
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value f_dictsort(Runtime& rt, const Value& v, const CallArgs& a) {
  bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
  static const Value kKey("key");
  bool by_value = arg(a, 1, "by", kKey).to_str() == "value";
  bool rev = arg(a, 2, "reverse", kFalse).truthy();
  Value items = f_items(rt, v, {});
  std::vector<Value> out = items.list_ref().items;
  std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
    Value kx = sort_key(rt, x.list_ref().items[by_value ? 1 : 0], kNone, cs);
    Value ky = sort_key(rt, y.list_ref().items[by_value ? 1 : 0], kNone, cs);
    return rev ? compare_values(ky, kx) < 0 : compare_values(kx, ky) < 0;
  });
  return Value::list(std::move(out));
}

Value minmax(Runtime& rt, const Value& v, const CallArgs& a, bool want_max) {
  bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
  const Value& attribute = arg(a, 1, "attribute", kNone);
  auto items = iterate(v);
  if (items.empty())
    return Value::undefined(std::string("No aggregated item, sequence was empty."));
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    int c = compare_values(sort_key(rt, items[i], attribute, cs),
                           sort_key(rt, items[best], attribute, cs));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}

Value f_min(Runtime& rt, const Value& v, const CallArgs& a) { return minmax(rt, v, a, false); }

Value f_max(Runtime& rt, const Value& v, const CallArgs& a) { return minmax(rt, v, a, true); }

Value f_sum(Runtime& rt, const Value& v, const CallArgs& a) {
  static const Value kZero(static_cast<int64_t>(0));
  const Value& attribute = arg(a, 0, "attribute", kNone);
  Value acc = arg(a, 1, "start", kZero);
  for (const auto& item : iterate(v)) {
    acc = binary_op(rt, "+", acc, attribute.is_none() ? item : lookup_attr(rt, item, attribute));
  }
  return acc;
}

}  // namespace

const std::map<std::string, FilterFn>& sequence_filters() {
  static const std::map<std::string, FilterFn> kFilters = {
      {"first", f_first},
      {"last", f_last},
      {"join", f_join},
      {"list", f_list},
      {"items", f_items},
      {"map", f_map},
      {"select", f_select},
      {"reject", f_reject},
      {"selectattr", f_selectattr},
      {"rejectattr", f_rejectattr},
      {"unique", f_unique},
      {"reverse", f_reverse},
      {"sort", f_sort},
      {"dictsort", f_dictsort},
      {"min", f_min},
      {"max", f_max},
      {"sum", f_sum},
  };
  return kFilters;
}

}  // namespace tessera::tokenizer::jinja
