// The defensive YAML layer (see yaml_check.h). Everything here is bounded: the pre-scan is one
// pass over at most kMaxConfigBytes, the tree walk stops after kMaxNodesVisited nodes, and the
// recursion is at most kMaxDepth deep, so a hostile file fails fast instead of exhausting memory
// or the stack.
#include "yaml_check.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "tessera/core/edit_distance.h"
#include "tessera/core/error.h"

namespace tessera::config::detail {
namespace {

std::string join(std::initializer_list<std::string_view> items) {
  std::string out;
  for (std::string_view s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// A plain scalar (no quotes, no tag) or one tagged with the given core-schema type.
bool is_plain_or_tagged(const YAML::Node& n, std::string_view type) {
  const std::string& tag = n.Tag();
  return tag == "?" || tag == std::string("tag:yaml.org,2002:") + std::string(type);
}

// Counts documents (the parse is repeated only for that) and remembers where the second starts.
class DocumentCounter : public YAML::EventHandler {
 public:
  SourcePos second;
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2 && !mark.is_null()) {
      second = {.line = mark.line + 1, .column = mark.column + 1};
    }
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  int documents_ = 0;
};

void walk(const YAML::Node& node, const std::string& path, int depth, long& visited,
          const std::string& source) {
  if (++visited > kMaxNodesVisited) {
    fail_at(source, pos_of(node), path,
            detail::concat("more than ", kMaxNodesVisited,
                           " values after expanding aliases (an alias bomb?)"));
  }
  if (depth > kMaxDepth) {
    fail_at(source, pos_of(node), path,
            detail::concat("nested deeper than ", kMaxDepth, " levels"));
  }
  if (node.IsSequence()) {
    size_t i = 0;
    for (const YAML::Node& child : node) {
      walk(child, detail::concat(path, "[", i++, "]"), depth + 1, visited, source);
    }
  } else if (node.IsMap()) {
    std::unordered_map<std::string, SourcePos> seen;
    // Iterate by value: yaml-cpp's iterator-> returns a proxy, so a reference into it dangles.
    for (const auto& entry : node) {
      const YAML::Node key = entry.first;
      const std::string where = path.empty() ? std::string("(top level)") : path;
      if (!key.IsScalar()) {
        fail_at(source, pos_of(key), where,
                detail::concat("a key must be a plain name, got ", describe(key)));
      }
      const std::string child = path.empty() ? key.Scalar() : path + "." + key.Scalar();
      const SourcePos pos = pos_of(key);
      auto [first, inserted] = seen.emplace(key.Scalar(), pos);
      if (!inserted) {
        fail_at(source, pos, child,
                detail::concat("duplicate key (first written at line ", first->second.line, ")"),
                "each key once per map");
      }
      walk(entry.second, child, depth + 1, visited, source);
    }
  }
}

}  // namespace

void fail_at(const std::string& source, SourcePos pos, std::string_view key,
             std::string_view problem, std::string_view valid) {
  std::string msg = source;
  if (pos.line > 0) msg += detail::concat(":", pos.line, ":", pos.column);
  msg += ": ";
  if (!key.empty()) msg += detail::concat("key '", key, "': ");
  msg += problem;
  if (!valid.empty()) msg += detail::concat(" (valid: ", valid, ")");
  throw Error(ErrorCode::kInvalidArgument, msg);
}

SourcePos pos_of(const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.line < 0 || m.column < 0) return {};
  return {.line = m.line + 1, .column = m.column + 1};
}

void prescan(std::string_view text, const std::string& source) {
  if (text.size() > kMaxConfigBytes) {
    fail_at(source, {}, "",
            detail::concat("the config is ", text.size(), " bytes; a topology file is at most ",
                           kMaxConfigBytes, " bytes"));
  }
  // Flow nesting ([ and {) counted outside quotes and comments; block nesting bounded by how far
  // a line's content starts (indentation plus compact "- " markers). Approximate on purpose: it
  // may undercount (yaml-cpp's own depth guard and check_tree's bound stay behind it), but it
  // cannot overcount a sane file, which would need 64 unclosed brackets.
  int depth = 0;
  int line = 1;
  int col = 1;
  char quote = 0;
  bool comment = false;
  bool line_start = true;  // still in indentation / "- " markers
  int content_col = 0;
  char prev = '\n';
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      col = 1;
      comment = false;
      line_start = true;
      content_col = 0;
      prev = c;
      continue;
    }
    if (line_start) {
      const bool marker = c == '-' && (i + 1 == text.size() || text[i + 1] == ' ' ||
                                       text[i + 1] == '\n' || text[i + 1] == '\r');
      if (c == ' ' || c == '\t' || marker) {
        if (++content_col > 4 * kMaxDepth) {
          fail_at(source, {.line = line, .column = col}, "",
                  detail::concat("nested deeper than ", kMaxDepth, " levels"));
        }
      } else {
        line_start = false;
      }
    }
    if (comment) {
    } else if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;  // skip the escaped character (never a newline that matters for depth)
        ++col;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
      comment = true;
    } else if ((c == '"' || c == '\'') &&
               (prev == ' ' || prev == '\t' || prev == '\n' || prev == '[' || prev == '{' ||
                prev == ',' || prev == ':' || prev == '-')) {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) {
        fail_at(source, {.line = line, .column = col}, "",
                detail::concat("nested deeper than ", kMaxDepth, " levels"));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
    prev = c;
    ++col;
  }
}

YAML::Node parse_yaml(std::string_view text, const std::string& source) {
  const std::string owned(text);
  YAML::Node root;
  try {
    root = YAML::Load(owned);
    // One document only. Not YAML::LoadAll: on a stray top-level ',' yaml-cpp 0.7 yields empty
    // documents forever without consuming it (found by the mutation test), so count at most two.
    std::istringstream in(owned);
    YAML::Parser parser(in);
    DocumentCounter counter;
    parser.HandleNextDocument(counter);
    if (parser.HandleNextDocument(counter)) {
      fail_at(source, counter.second, "",
              "a topology is one YAML document; another one starts here (a '---', or a stray "
              "',', ']' or '}' at the top level)");
    }
  } catch (const YAML::Exception& e) {
    SourcePos pos;
    if (!e.mark.is_null()) pos = {.line = e.mark.line + 1, .column = e.mark.column + 1};
    fail_at(source, pos, "", detail::concat("not valid YAML: ", e.msg));
  }
  return root;
}

void check_tree(const YAML::Node& root, const std::string& source) {
  long visited = 0;
  walk(root, "", 0, visited, source);
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing (null)";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      break;
  }
  std::string s = node.Scalar();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return node.Tag() == "!" ? detail::concat("the quoted string \"", s, "\"")
                           : detail::concat("'", s, "'");
}

void for_each_key(const std::string& source, const YAML::Node& map, std::string_view section,
                  SourcePos section_pos, std::string_view prefix,
                  std::initializer_list<std::string_view> allowed,
                  const std::function<void(const Field&)>& fn) {
  if (map.IsNull()) return;
  if (!map.IsMap()) {
    fail_at(source, section_pos, section, "expected a map of keys, got " + describe(map),
            join(allowed));
  }
  for (const auto& entry : map) {                   // by value: see walk()
    const std::string name = entry.first.Scalar();  // check_tree made every key a scalar
    const std::string key = std::string(prefix) + name;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string problem = "unknown key";
      std::string_view best;
      size_t best_d = 3;  // suggest only a near miss (a typo), not any key
      for (std::string_view a : allowed) {
        const size_t d = edit_distance(name, a);
        if (d < best_d) best = a, best_d = d;
      }
      if (!best.empty()) problem += detail::concat(" (did you mean '", best, "'?)");
      fail_at(source, pos_of(entry.first), key, problem, join(allowed));
    }
    fn(Field{.source = source, .key = key, .pos = pos_of(entry.first), .value = entry.second});
  }
}

long long read_int(const Field& f, long long lo, long long hi, std::string_view valid) {
  const std::string range = valid.empty() ? detail::concat(lo, "..", hi) : std::string(valid);
  if (!f.value.IsScalar() || !is_plain_or_tagged(f.value, "int")) {
    fail_at(f.source, f.pos, f.key, "expected an integer, got " + describe(f.value), range);
  }
  const std::string& s = f.value.Scalar();
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) {
    fail_at(f.source, f.pos, f.key, detail::concat(s, " is out of range"), range);
  }
  if (ec != std::errc() || end != s.data() + s.size()) {
    fail_at(f.source, f.pos, f.key, "expected an integer, got " + describe(f.value), range);
  }
  if (v < lo || v > hi)
    fail_at(f.source, f.pos, f.key, detail::concat(v, " is out of range"), range);
  return v;
}

double read_positive_seconds(const Field& f, double hi) {
  const std::string range = detail::concat("seconds, > 0 and <= ", hi);
  if (!f.value.IsScalar() || !is_plain_or_tagged(f.value, "float")) {
    fail_at(f.source, f.pos, f.key, "expected a number, got " + describe(f.value), range);
  }
  const std::string& s = f.value.Scalar();
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) {
    fail_at(f.source, f.pos, f.key, "expected a number, got " + describe(f.value), range);
  }
  if (!std::isfinite(v) || v <= 0 || v > hi) {
    fail_at(f.source, f.pos, f.key, detail::concat(s, " is out of range"), range);
  }
  return v;
}

bool read_bool(const Field& f) {
  if (f.value.IsScalar() && is_plain_or_tagged(f.value, "bool")) {
    std::string s = f.value.Scalar();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  fail_at(f.source, f.pos, f.key, "expected true or false, got " + describe(f.value),
          "true, false");
}

std::string read_string(const Field& f, bool allow_empty, std::string_view valid) {
  if (f.value.IsNull() && allow_empty) return "";
  if (!f.value.IsScalar()) {
    fail_at(f.source, f.pos, f.key, "expected a string, got " + describe(f.value), valid);
  }
  if (f.value.Scalar().empty() && !allow_empty) {
    fail_at(f.source, f.pos, f.key, "must not be empty", valid);
  }
  return f.value.Scalar();
}

std::string read_enum(const Field& f, std::initializer_list<std::string_view> choices) {
  if (!f.value.IsScalar()) {
    fail_at(f.source, f.pos, f.key, "expected one of the names, got " + describe(f.value),
            join(choices));
  }
  std::string s = f.value.Scalar();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (std::find(choices.begin(), choices.end(), s) == choices.end()) {
    fail_at(f.source, f.pos, f.key, detail::concat("unknown value ", describe(f.value)),
            join(choices));
  }
  return s;
}

void expect_sequence(const Field& f, std::string_view valid) {
  if (!f.value.IsSequence()) {
    fail_at(f.source, f.pos, f.key, "expected a list, got " + describe(f.value), valid);
  }
}

}  // namespace tessera::config::detail
