// Jinja runtime values: construction from JSON, Python-compatible printing (str/repr/float repr),
// equality and json.dumps. Python's formatting rules are followed exactly because chat templates
// print these values straight into model prompts.
#include "tessera/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "tessera/core/error.h"

namespace tessera::tokenizer::jinja {

const Value* DictObj::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void DictObj::set(const std::string& key, Value v) {
  for (auto& [k, old] : items) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  items.emplace_back(key, std::move(v));
}

const Value* CallArgs::kwarg(std::string_view name) const {
  for (const auto& [k, v] : kw) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto l = std::make_shared<ListObj>();
  l->items = std::move(items);
  l->tuple = tuple;
  return Value(std::move(l));
}

Value Value::dict() { return Value(std::make_shared<DictObj>()); }

Value Value::function(std::string name, std::function<Value(const CallArgs&)> fn) {
  return Value(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

namespace {
// Deeper JSON cannot come from a parse (bounded_json caps depth at 64), but a caller may build a
// document by hand; the guard keeps this recursion (and Value's recursive destructor) off the
// end of the stack whatever the source.
constexpr int kMaxJsonDepth = 128;

template <typename Json>
Value convert_json(const Json& j, int depth = 0) {
  if (depth > kMaxJsonDepth) {
    fail(ErrorCode::kInvalidArgument, "chat template input: JSON nested deeper than ",
         kMaxJsonDepth, " levels");
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value(nullptr);
    case nlohmann::json::value_t::boolean:
      return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(convert_json(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::dict();
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.dict_mut().items.emplace_back(it.key(), convert_json(it.value(), depth + 1));
      }
      return d;
    }
    default:
      fail(ErrorCode::kInvalidArgument, "chat template: unsupported JSON value (binary/discarded)");
  }
}
}  // namespace

Value Value::from_json(const nlohmann::json& j) { return convert_json(j); }
Value Value::from_json(const nlohmann::ordered_json& j) { return convert_json(j); }

int64_t Value::as_int() const {
  if (is_bool()) return as_bool() ? 1 : 0;
  return std::get<int64_t>(v_);
}

double Value::as_double() const {
  if (is_float()) return std::get<double>(v_);
  return static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (v_.index()) {
    case 0:
      return false;
    case 1:
      return false;
    case 2:
      return as_bool();
    case 3:
      return as_int() != 0;
    case 4:
      return as_double() != 0.0;
    case 5:
      return !str_ref().empty();
    case 6:
      return !list_ref().items.empty();
    case 7:
      return dict_ref().is_namespace || !dict_ref().items.empty();
    default:
      return true;
  }
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = !sci.empty() && sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp10 = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  std::string out = neg ? "-" : "";
  if (d == 0.0) return out + "0.0";
  if (decpt > -4 && decpt <= 16) {
    int nd = static_cast<int>(digits.size());
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (decpt >= nd) {
      out += digits + std::string(static_cast<size_t>(decpt - nd), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." +
             digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  int x = decpt - 1;
  char ebuf[16];
  std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
  return out + ebuf;
}

namespace {
// Decodes one UTF-8 code point at s[i]; invalid bytes decode as themselves (one byte).
uint32_t decode_utf8(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len <= 1 || i + static_cast<size_t>(len) > s.size()) {
    ++i;
    return c;
  }
  uint32_t cp = c & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    auto cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((cc & 0xC0) != 0x80) {
      ++i;
      return c;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += static_cast<size_t>(len);
  return cp;
}

std::string str_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = decode_utf8(s, i);
    char buf[16];
    if (cp == static_cast<uint32_t>(q) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      out += buf;
    } else {
      out.append(s, start, i - start);
    }
  }
  out += q;
  return out;
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  size_t i = 0;
  char buf[16];
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = decode_utf8(s, i);
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      }
      out += buf;
    } else {
      out.append(s, start, i - start);
    }
  }
  out += '"';
}

void dump_rec(std::string& out, const Value& v, const JsonDumpOptions& opt, int level) {
  bool pretty = opt.indent >= 0 || !opt.indent_str.empty();
  std::string unit = !opt.indent_str.empty()
                         ? opt.indent_str
                         : std::string(opt.indent > 0 ? static_cast<size_t>(opt.indent) : 0, ' ');
  auto newline = [&](int lvl) {
    out += '\n';
    for (int k = 0; k < lvl; ++k) out += unit;
  };
  if (level > 512) fail(ErrorCode::kResourceExhausted, "chat template: tojson nesting too deep");
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    double d = v.as_double();
    out += std::isnan(d)   ? "NaN"
           : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                           : float_repr(d);
  } else if (v.is_string()) {
    json_string(out, v.str_ref(), opt.ensure_ascii);
  } else if (v.is_list()) {
    const auto& items = v.list_ref().items;
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += opt.item_sep;
      if (pretty) newline(level + 1);
      dump_rec(out, items[i], opt, level + 1);
    }
    if (pretty) newline(level);
    out += ']';
  } else if (v.is_dict() && !v.dict_ref().is_namespace) {
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& kv : v.dict_ref().items) items.push_back(&kv);
    if (items.empty()) {
      out += "{}";
      return;
    }
    if (opt.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](auto* a, auto* b) { return a->first < b->first; });
    }
    out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += opt.item_sep;
      if (pretty) newline(level + 1);
      json_string(out, items[i]->first, opt.ensure_ascii);
      out += opt.key_sep;
      dump_rec(out, items[i]->second, opt, level + 1);
    }
    if (pretty) newline(level);
    out += '}';
  } else {
    fail(ErrorCode::kInvalidArgument, "chat template: Object of type ", v.type_name(),
         " is not JSON serializable");
  }
}
}  // namespace

std::string dump_json(const Value& v, const JsonDumpOptions& opt) {
  std::string out;
  dump_rec(out, v, opt, 0);
  return out;
}

std::vector<std::string> utf8_chars(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    decode_utf8(s, i);
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0, i = 0;
  while (i < s.size()) {
    decode_utf8(s, i);
    ++n;
  }
  return n;
}

std::string Value::to_str() const {
  switch (v_.index()) {
    case 0:
      return "";
    case 1:
      return "None";
    case 2:
      return as_bool() ? "True" : "False";
    case 3:
      return std::to_string(as_int());
    case 4:
      return float_repr(as_double());
    case 5:
      return str_ref();
    case 6: {
      const auto& l = list_ref();
      std::string out = l.tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        out += l.items[i].repr();
      }
      if (l.tuple && l.items.size() == 1) out += ",";
      out += l.tuple ? ")" : "]";
      return out;
    }
    case 7: {
      const auto& d = dict_ref();
      std::string out = d.is_namespace ? "<Namespace {" : "{";
      for (size_t i = 0; i < d.items.size(); ++i) {
        if (i) out += ", ";
        out += str_repr(d.items[i].first) + ": " + d.items[i].second.repr();
      }
      out += d.is_namespace ? "}>" : "}";
      return out;
    }
    default:
      return "<function " + func_ref().name + ">";
  }
}

std::string Value::repr() const {
  if (is_string()) return str_repr(str_ref());
  if (is_undefined()) return "Undefined";
  return to_str();
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (is_float() || o.is_float()) return as_double() == o.as_double();
    return as_int() == o.as_int();
  }
  if (v_.index() != o.v_.index()) return false;
  switch (v_.index()) {
    case 0:
    case 1:
      return true;
    case 5:
      return str_ref() == o.str_ref();
    case 6: {
      const auto &a = list_ref(), &b = o.list_ref();
      if (a.tuple != b.tuple || a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!a.items[i].equals(b.items[i])) return false;
      }
      return true;
    }
    case 7: {
      const auto &a = dict_ref(), &b = o.dict_ref();
      if (a.is_namespace || b.is_namespace) return &a == &b;
      if (a.items.size() != b.items.size()) return false;
      for (const auto& [k, v] : a.items) {
        const Value* other = b.find(k);
        if (!other || !v.equals(*other)) return false;
      }
      return true;
    }
    default:
      return &func_ref() == &o.func_ref();
  }
}

const char* Value::type_name() const {
  switch (v_.index()) {
    case 0:
      return "Undefined";
    case 1:
      return "NoneType";
    case 2:
      return "bool";
    case 3:
      return "int";
    case 4:
      return "float";
    case 5:
      return "str";
    case 6:
      return list_ref().tuple ? "tuple" : "list";
    case 7:
      return dict_ref().is_namespace ? "Namespace" : "dict";
    default:
      return "function";
  }
}

}  // namespace tessera::tokenizer::jinja
