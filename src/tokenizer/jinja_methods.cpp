// Attribute access and the Python methods templates call on str and dict values (strip, split,
// startswith, items, get, ...). Mutating methods (list.append, dict.update) do not exist here,
// matching jinja2's ImmutableSandboxedEnvironment, which refuses them.
#include <algorithm>
#include <cctype>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja_runtime.h"
#include "tessera/tokenizer/unicode.h"

namespace tessera::tokenizer::jinja {
namespace {

uint32_t next_cp(const std::string& s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + static_cast<size_t>(len) > s.size()) len = 1;
  uint32_t cp = len == 1 ? c : (c & (0x7F >> len));
  for (int k = 1; k < len; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3F);
  i += static_cast<size_t>(len);
  return cp;
}

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Simple case mapping: ASCII, Latin-1, Greek and Cyrillic (what chat content mostly uses).
uint32_t map_case(uint32_t cp, bool upper) {
  if (upper) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) ||
        (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) || (cp >= 0x430 && cp <= 0x44F)) {
      return cp - 0x20;
    }
    if (cp >= 0x450 && cp <= 0x45F) return cp - 0x50;
    return cp;
  }
  if ((cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ||
      (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) || (cp >= 0x410 && cp <= 0x42F)) {
    return cp + 0x20;
  }
  if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  return cp;
}

bool is_cased_letter(uint32_t cp) { return map_case(cp, true) != cp || map_case(cp, false) != cp; }

std::string map_all(const std::string& s, bool upper) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = next_cp(s, i);
    uint32_t m = map_case(cp, upper);
    if (upper && cp == 0xDF) {  // German sharp s upper-cases to "SS" in Python
      out += "SS";
    } else if (m == cp) {
      out.append(s, start, i - start);
    } else {
      append_utf8(out, m);
    }
  }
  return out;
}

// Python str.title(): a cased letter after an uncased character starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = next_cp(s, i);
    bool cased = is_cased_letter(cp);
    append_utf8(out, map_case(cp, !prev_cased));
    prev_cased = cased;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out;
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    append_utf8(out, map_case(next_cp(s, i), first));
    first = false;
  }
  return out;
}

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) runtime_error(std::string(what) + " must be str, not " + v.type_name());
  return v.str_ref();
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {
    size_t i = 0;
    while (true) {
      // skip whitespace
      size_t j = i;
      while (j < s.size()) {
        size_t k = j;
        if (!is_py_space(next_cp(s, k))) break;
        j = k;
      }
      if (j >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
        std::string rest = s.substr(j);
        size_t end = rest.size();
        while (end > 0 && is_py_space(static_cast<unsigned char>(rest[end - 1]))) --end;
        out.push_back(rest.substr(0, end));
        break;
      }
      size_t k = j;
      while (k < s.size()) {
        size_t n = k;
        if (is_py_space(next_cp(s, n))) break;
        k = n;
      }
      out.push_back(s.substr(j, k - j));
      i = k;
    }
    return out;
  }
  const std::string& d = need_str(sep, "separator");
  if (d.empty()) runtime_error("empty separator");
  size_t pos = 0;
  while (true) {
    size_t f = s.find(d, pos);
    if (f == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit)) {
      out.push_back(s.substr(pos));
      break;
    }
    out.push_back(s.substr(pos, f - pos));
    pos = f + d.size();
  }
  return out;
}

bool match_affix(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    const std::string& x = need_str(a, "prefix");
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0
                  : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    return std::any_of(affix.list_ref().items.begin(), affix.list_ref().items.end(), one);
  }
  return one(affix);
}

std::string py_replace(Runtime& rt, const std::string& s, const std::string& from,
                       const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between every character (and at both ends).
    auto chars = utf8_chars(s);
    int64_t n = 0;
    for (size_t i = 0; i <= chars.size(); ++i) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      if (i < chars.size()) out += chars[i];
      rt.check_size(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (true) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos || (count >= 0 && n >= count)) break;
    out.append(s, pos, f - pos);
    out += to;
    rt.check_size(out.size());
    pos = f + from.size();
    ++n;
  }
  out.append(s, pos);
  rt.check_size(out.size());
  return out;
}

Value str_method(Runtime& rt, const std::string& s, const std::string& name, const CallArgs& a) {
  static const Value kNone(nullptr);
  static const Value kMinus1(static_cast<int64_t>(-1));
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    return Value(py_strip(s, arg(a, 0, "chars", kNone), name != "rstrip", name != "lstrip"));
  }
  if (name == "upper") return Value(py_upper(s));
  if (name == "lower") return Value(py_lower(s));
  if (name == "title") return Value(py_title(s));
  if (name == "capitalize") return Value(py_capitalize(s));
  if (name == "split") {
    std::vector<Value> out;
    for (auto& p : py_split(s, arg(a, 0, "sep", kNone), arg(a, 1, "maxsplit", kMinus1).as_int())) {
      out.emplace_back(std::move(p));
    }
    return Value::list(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    return Value(match_affix(s, arg(a, 0, "prefix", kNone), name == "startswith"));
  }
  if (name == "replace") {
    return Value(py_replace(rt, s, need_str(arg(a, 0, "old", kNone), "old"),
                            need_str(arg(a, 1, "new", kNone), "new"),
                            arg(a, 2, "count", kMinus1).as_int()));
  }
  if (name == "find" || name == "count" || name == "index") {
    const std::string& sub = need_str(arg(a, 0, "sub", kNone), "sub");
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    size_t f = s.find(sub);
    if (f == std::string::npos) {
      if (name == "index") runtime_error("substring not found");
      return Value(static_cast<int64_t>(-1));
    }
    return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, f))));
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const auto& v : iterate(arg(a, 0, "iterable", kNone))) {
      if (!first) out += s;
      first = false;
      out += need_str(v, "sequence item");
      rt.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (name == "splitlines") {
    std::vector<Value> out;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f') {
        out.emplace_back(s.substr(start, i - start));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) out.emplace_back(s.substr(start));
    return Value::list(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const std::string& x = need_str(arg(a, 0, "affix", kNone), "affix");
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.size() >= x.size() &&
        s.compare(s.size() - x.size(), x.size(), x) == 0) {
      return Value(s.substr(0, s.size() - x.size()));
    }
    return Value(s);
  }
  auto all = [&](auto pred) {
    return Value(!s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
      return pred(static_cast<unsigned char>(c));
    }));
  };
  if (name == "isdigit") return all([](int c) { return std::isdigit(c); });
  if (name == "isalpha") return all([](int c) { return std::isalpha(c); });
  if (name == "isalnum") return all([](int c) { return std::isalnum(c); });
  if (name == "isspace") return all([](int c) { return std::isspace(c); });
  runtime_error("unsupported str method '" + name + "'");
}

Value dict_method(const Value& d, const std::string& name, const CallArgs& a) {
  static const Value kNone(nullptr);
  const auto& items = d.dict_ref().items;
  std::vector<Value> out;
  if (name == "items") {
    for (const auto& [k, v] : items) out.push_back(Value::list({Value(k), v}, true));
    return Value::list(std::move(out));
  }
  if (name == "keys") {
    for (const auto& kv : items) out.emplace_back(kv.first);
    return Value::list(std::move(out));
  }
  if (name == "values") {
    for (const auto& kv : items) out.push_back(kv.second);
    return Value::list(std::move(out));
  }
  // get(key, default=None)
  const Value& key = arg(a, 0, "key", kNone);
  if (key.is_string()) {
    if (const Value* v = d.dict_ref().find(key.str_ref())) return *v;
  }
  return arg(a, 1, "default", kNone);
}

bool is_str_method(const std::string& n) {
  static const char* kNames[] = {
      "strip",      "lstrip",  "rstrip",     "upper",      "lower",        "title",
      "capitalize", "split",   "startswith", "endswith",   "replace",      "find",
      "count",      "index",   "join",       "splitlines", "removeprefix", "removesuffix",
      "isdigit",    "isalpha", "isalnum",    "isspace"};
  return std::find(std::begin(kNames), std::end(kNames), n) != std::end(kNames);
}

}  // namespace

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::vector<uint32_t> set;
  bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) {
    const std::string& c = need_str(chars, "strip arg");
    size_t i = 0;
    while (i < c.size()) set.push_back(next_cp(c, i));
  }
  auto strip_cp = [&](uint32_t cp) {
    return ws ? is_py_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  std::vector<size_t> starts;  // code point boundaries
  size_t i = 0;
  while (i < s.size()) {
    starts.push_back(i);
    next_cp(s, i);
  }
  starts.push_back(s.size());
  size_t b = 0, e = starts.size() - 1;  // indices into starts
  auto cp_at = [&](size_t k) {
    size_t p = starts[k];
    return next_cp(s, p);
  };
  if (left) {
    while (b < e && strip_cp(cp_at(b))) ++b;
  }
  if (right) {
    while (e > b && strip_cp(cp_at(e - 1))) --e;
  }
  return s.substr(starts[b], starts[e] - starts[b]);
}

std::string py_lower(std::string s) { return map_all(s, false); }
std::string py_upper(std::string s) { return map_all(s, true); }

Value get_attr(Runtime& rt, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict()) {
    const DictObj& d = obj.dict_ref();
    if (!d.is_namespace &&
        (name == "items" || name == "keys" || name == "values" || name == "get")) {
      return Value::function(name,
                             [obj, name](const CallArgs& a) { return dict_method(obj, name, a); });
    }
    if (const Value* v = d.find(name)) return *v;
    return Value::undefined(detail::concat("'", d.is_namespace ? "Namespace" : "dict object",
                                           "' has no attribute '", name, "'"));
  }
  if (obj.is_string() && is_str_method(name)) {
    std::string s = obj.str_ref();
    Runtime* r = &rt;
    return Value::function(name,
                           [s, name, r](const CallArgs& a) { return str_method(*r, s, name, a); });
  }
  return Value::undefined(
      detail::concat("'", obj.type_name(), " object' has no attribute '", name, "'"));
}

}  // namespace tessera::tokenizer::jinja
