// Jinja filters, following jinja2 3.1's implementations (and Hugging Face's tojson
// override: json.dumps with ensure_ascii=False and no HTML escaping).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "tessera/core/error.h"
#include "tessera/tokenizer/jinja_runtime.h"

namespace tessera::tokenizer::jinja {
namespace {

const Value kNone(nullptr);
const Value kFalse(false);
const Value kEmpty(std::string{});

Value f_trim(Runtime&, const Value& v, const CallArgs& a) {
  return Value(py_strip(v.to_str(), arg(a, 0, "chars", kNone), true, true));
}
Value f_upper(Runtime&, const Value& v, const CallArgs&) { return Value(py_upper(v.to_str())); }
Value f_lower(Runtime&, const Value& v, const CallArgs&) { return Value(py_lower(v.to_str())); }

Value f_title(Runtime&, const Value& v, const CallArgs&) {
  std::string s = v.to_str(), out;
  auto is_sep = [](char c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || c == ' ' || c == '\t' ||
           c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    bool sep = is_sep(s[i]);
    while (j < s.size() && is_sep(s[j]) == sep) ++j;
    std::string piece = s.substr(i, j - i);
    if (sep) {
      out += piece;
    } else {
      auto chars = utf8_chars(piece);
      out += py_upper(chars[0]);
      out += py_lower(piece.substr(chars[0].size()));
    }
    i = j;
  }
  return Value(std::move(out));
}

Value f_capitalize(Runtime&, const Value& v, const CallArgs&) {
  std::string s = v.to_str();
  if (s.empty()) return Value(s);
  auto first = utf8_chars(s)[0];
  return Value(py_upper(first) + py_lower(s.substr(first.size())));
}

Value f_length(Runtime&, const Value& v, const CallArgs&) {
  return Value(static_cast<int64_t>(py_len(v)));
}

Value f_default(Runtime&, const Value& v, const CallArgs& a) {
  bool boolean = arg(a, 1, "boolean", kFalse).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", kEmpty);
  return v;
}

Value f_replace(Runtime& rt, const Value& v, const CallArgs& a) {
  CallArgs m;
  m.pos = {arg(a, 0, "old", kNone), arg(a, 1, "new", kNone)};
  const Value& count = arg(a, 2, "count", kNone);
  if (!count.is_none()) m.pos.push_back(count);
  return call_value(rt, get_attr(rt, Value(v.to_str()), "replace"), m);
}

Value f_tojson(Runtime& rt, const Value& v, const CallArgs& a) {
  JsonDumpOptions opt;
  opt.ensure_ascii = arg(a, 0, "ensure_ascii", kFalse).truthy();
  const Value& indent = arg(a, 1, "indent", kNone);
  if (indent.is_string()) {
    opt.indent = 0;
    opt.indent_str = indent.str_ref();
    if (opt.indent_str.empty()) opt.indent_str.clear();
  } else if (indent.is_int()) {
    opt.indent = static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64));
  } else if (!indent.is_none()) {
    runtime_error("tojson: indent must be an int or a string");
  }
  const Value& seps = arg(a, 2, "separators", kNone);
  if (!seps.is_none()) {
    if (!seps.is_list() || seps.list_ref().items.size() != 2)
      runtime_error("tojson: bad separators");
    opt.item_sep = seps.list_ref().items[0].to_str();
    opt.key_sep = seps.list_ref().items[1].to_str();
  } else if (!indent.is_none()) {
    opt.item_sep.assign(1, ',');  // not = ",": dodges a GCC 12 -Wrestrict false positive
  }
  opt.sort_keys = arg(a, 3, "sort_keys", kFalse).truthy();
  std::string out = dump_json(v, opt);
  rt.check_size(out.size());
  return Value(std::move(out));
}

Value f_string(Runtime&, const Value& v, const CallArgs&) { return Value(v.to_str()); }

bool parse_int(std::string s, int base, int64_t& out) {
  s = py_strip(s, kNone, true, true);
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long r = std::strtoll(s.c_str(), &end, base);
  if (errno || *end) return false;
  out = r;
  return true;
}

Value f_int(Runtime&, const Value& v, const CallArgs& a) {
  static const Value kZero(static_cast<int64_t>(0));
  static const Value kTen(static_cast<int64_t>(10));
  const Value& dflt = arg(a, 0, "default", kZero);
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return dflt;
    return Value(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    int64_t r;
    if (parse_int(v.str_ref(), static_cast<int>(arg(a, 1, "base", kTen).as_int()), r))
      return Value(r);
    char* end = nullptr;
    std::string s = py_strip(v.str_ref(), kNone, true, true);
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && !*end && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value(static_cast<int64_t>(d));
  }
  return dflt;
}

Value f_float(Runtime&, const Value& v, const CallArgs& a) {
  static const Value kZero(0.0);
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    std::string s = py_strip(v.str_ref(), kNone, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && !*end) return Value(d);
  }
  return arg(a, 0, "default", kZero);
}

Value f_abs(Runtime&, const Value& v, const CallArgs&) {
  if (!v.is_number())
    runtime_error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.as_int() == INT64_MIN) fail(ErrorCode::kOutOfRange, "chat template: integer overflow");
  return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
}

Value f_round(Runtime&, const Value& v, const CallArgs& a) {
  static const Value kZero(static_cast<int64_t>(0));
  static const Value kCommon("common");
  int64_t precision = arg(a, 0, "precision", kZero).as_int();
  std::string method = arg(a, 1, "method", kCommon).to_str();
  if (!v.is_number()) runtime_error("round: value must be a number");
  if (method != "common" && method != "ceil" && method != "floor") {
    runtime_error("method must be 'common', 'ceil' or 'floor'");
  }
  double x = v.as_double();
  if (method == "common") {
    if (!v.is_float()) return Value(v.as_int());
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f",
                  static_cast<int>(std::clamp<int64_t>(precision, 0, 300)), x);
    return Value(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  return Value((method == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
}

Value f_safe(Runtime&, const Value& v, const CallArgs&) { return v; }

Value f_escape(Runtime&, const Value& v, const CallArgs&) {
  std::string out;
  for (char c : v.to_str()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value(std::move(out));
}

Value f_indent(Runtime& rt, const Value& v, const CallArgs& a) {
  static const Value kFour(static_cast<int64_t>(4));
  const Value& width = arg(a, 0, "width", kFour);
  bool first = arg(a, 1, "first", kFalse).truthy();
  bool blank = arg(a, 2, "blank", kFalse).truthy();
  std::string ind =
      width.is_string()
          ? width.str_ref()
          : std::string(static_cast<size_t>(std::clamp<int64_t>(width.as_int(), 0, 1024)), ' ');
  std::string s = v.to_str() + "\n";
  CallArgs none;
  Value lines_v = call_value(rt, get_attr(rt, Value(s), "splitlines"), none);
  const auto& lines = lines_v.list_ref().items;
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].str_ref();
    if (i > 0) {
      out += "\n";
      if (blank || !line.empty()) out += ind;
    }
    out += line;
    rt.check_size(out.size());
  }
  if (first) out = ind + out;
  return Value(std::move(out));
}

Value f_wordcount(Runtime&, const Value& v, const CallArgs&) {
  std::string s = v.to_str();
  int64_t n = 0;
  bool in_word = false;
  for (char c : s) {
    bool w = std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
             (static_cast<unsigned char>(c) & 0x80);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}

Value f_attr(Runtime& rt, const Value& v, const CallArgs& a) {
  return get_attr(rt, v, arg(a, 0, "name", kEmpty).to_str());
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> kFilters = {
      {"trim", f_trim},
      {"upper", f_upper},
      {"lower", f_lower},
      {"title", f_title},
      {"capitalize", f_capitalize},
      {"length", f_length},
      {"count", f_length},
      {"default", f_default},
      {"d", f_default},
      {"replace", f_replace},
      {"tojson", f_tojson},
      {"string", f_string},
      {"int", f_int},
      {"float", f_float},
      {"abs", f_abs},
      {"round", f_round},
      {"safe", f_safe},
      {"escape", f_escape},
      {"e", f_escape},
      {"indent", f_indent},
      {"wordcount", f_wordcount},
      {"attr", f_attr},
  };
  return kFilters;
}

}  // namespace

// jinja2's attribute lookup for filters: "a.b.0" walks attributes/items.
Value lookup_attr(Runtime& rt, const Value& item, const Value& attribute) {
  if (attribute.is_int()) return get_item(rt, item, attribute);
  Value cur = item;
  std::string path = attribute.to_str();
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = digits ? get_item(rt, cur, Value(static_cast<int64_t>(std::atoll(part.c_str()))))
                 : get_item(rt, cur, Value(part));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

bool has_filter(const std::string& name) {
  return filters().count(name) > 0 || sequence_filters().count(name) > 0;
}

Value apply_filter(Runtime& rt, const std::string& name, const Value& input, const CallArgs& args) {
  auto it = filters().find(name);
  if (it != filters().end()) return it->second(rt, input, args);
  auto seq = sequence_filters().find(name);
  if (seq == sequence_filters().end()) {
    runtime_error(detail::concat("no filter named '", name, "'"));
  }
  return seq->second(rt, input, args);
}

}  // namespace tessera::tokenizer::jinja
