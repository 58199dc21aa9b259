// JSON Schema → GBNF (see front_ends.h). One converter per call owns the rules it writes and the
// names given to $refs (so recursive schemas become recursive rules). Every keyword is either
// handled, an annotation that changes nothing, or refused by name.
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/grammar.h"

namespace tessera::grammar {
namespace {

using json = nlohmann::ordered_json;

// Bounded whitespace: a small model must not be able to loop on it forever.
constexpr const char* kCommonRules = R"(ws ::= ( " " | "\n" [ ]{0,12} )?
string ::= "\"" ( [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
integer ::= "-"? ( [0-9] | [1-9] [0-9]{1,15} )
number ::= integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( member ( "," ws member )* )? "}"
member ::= string ws ":" ws value ws
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
)";

const std::set<std::string, std::less<>> kAnnotations = {
    "title", "description", "$schema", "$id",      "default",   "examples",  "$comment",
    "$defs", "definitions", "strict",  "readOnly", "writeOnly", "deprecated"};
const std::set<std::string, std::less<>> kHandled = {
    "type",      "properties", "required", "additionalProperties",
    "items",     "enum",       "const",    "anyOf",
    "$ref",      "minItems",   "maxItems", "pattern",
    "minLength", "maxLength",  "allOf"};

class SchemaConverter {
 public:
  SchemaConverter(const json& root, const SchemaLimits& limits) : root_(root), limits_(limits) {}

  std::string convert() {
    std::string root_expr = visit(root_, "#");
    std::string out = "root ::= " + root_expr + "\n" + kCommonRules;
    for (const std::string& r : rules_) out += r;
    return out;
  }

 private:
  const json& root_;
  SchemaLimits limits_;
  std::vector<std::string> rules_;
  std::map<std::string, std::string> ref_rules_;  // $ref → its rule name
  int depth_ = 0;

  [[noreturn]] void refuse(const std::string& path, const std::string& keyword,
                           const std::string& why) const {
    fail(ErrorCode::kInvalidArgument, "JSON Schema keyword '", keyword, "' at ", path, ": ", why);
  }

  std::string add_rule(std::string body) {
    if (rules_.size() >= limits_.max_rules)
      fail(ErrorCode::kResourceExhausted, "JSON Schema expands to more than ", limits_.max_rules,
           " grammar rules");
    std::string name = "s" + std::to_string(rules_.size());
    rules_.push_back(name + " ::= " + body + "\n");
    return name;
  }
  std::string define(const std::string& name, const std::string& body) {
    rules_.push_back(name + " ::= " + body + "\n");
    return name;
  }

  int bound(const json& s, const char* key, const std::string& path, int fallback) const {
    if (!s.contains(key)) return fallback;
    const json& v = s[key];
    if (!v.is_number_integer() || v.get<long long>() < 0)
      refuse(path, key, "must be a non-negative integer");
    if (v.get<long long>() > limits_.max_items)
      refuse(path, key, "over " + std::to_string(limits_.max_items) + " is not supported");
    return static_cast<int>(v.get<long long>());
  }

  static std::string literal(const json& v) { return gbnf_literal(v.dump()); }

  std::string visit(const json& s, const std::string& path) {
    if (++depth_ > 64) fail(ErrorCode::kInvalidArgument, "JSON Schema nested too deep at ", path);
    std::string e = visit_inner(s, path);
    --depth_;
    return e;
  }

  std::string visit_inner(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) refuse(path, "false", "a schema that matches nothing");
      return "value";
    }
    if (!s.is_object())
      fail(ErrorCode::kInvalidArgument, "JSON Schema at ", path, " is not an object");
    for (const auto& [k, v] : s.items())
      if (!kAnnotations.contains(k) && !kHandled.contains(k)) refuse(path, k, "not supported");
    if (s.contains("$ref")) return ref(s["$ref"], path);
    if (s.contains("const")) return literal(s["const"]);
    if (s.contains("enum")) {
      const json& e = s["enum"];
      if (!e.is_array() || e.empty()) refuse(path, "enum", "must be a non-empty array");
      std::string alts;
      for (const json& v : e) alts += (alts.empty() ? "" : " | ") + literal(v);
      return "(" + alts + ")";
    }
    if (s.contains("anyOf") || s.contains("allOf")) {
      const char* key = s.contains("anyOf") ? "anyOf" : "allOf";
      const json& list = s[key];
      if (!list.is_array() || list.empty()) refuse(path, key, "must be a non-empty array");
      if (std::string(key) == "allOf" && list.size() != 1)
        refuse(path, "allOf", "only a single-schema allOf is supported");
      std::string alts;
      for (size_t i = 0; i < list.size(); ++i)
        alts += (i ? " | " : "") + visit(list[i], path + "/" + key + "/" + std::to_string(i));
      return "(" + alts + ")";
    }
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) return typed(s, t.get<std::string>(), path);
      if (!t.is_array() || t.empty()) refuse(path, "type", "must be a string or a non-empty array");
      std::string alts;
      for (const json& one : t) {
        if (!one.is_string()) refuse(path, "type", "must list type names");
        alts += (alts.empty() ? "" : " | ") + typed(s, one.get<std::string>(), path);
      }
      return "(" + alts + ")";
    }
    if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required"))
      return typed(s, "object", path);
    if (s.contains("items")) return typed(s, "array", path);
    return "value";
  }

  std::string ref(const json& r, const std::string& path) {
    if (!r.is_string()) refuse(path, "$ref", "must be a string");
    std::string target = r.get<std::string>();
    if (auto it = ref_rules_.find(target); it != ref_rules_.end()) return it->second;
    if (target.rfind("#", 0) != 0)
      refuse(path, "$ref", "only local references (#/...) are supported");
    const json* node = &root_;
    std::string pointer = target.substr(1);
    size_t start = 1;
    while (start <= pointer.size() && !pointer.empty()) {
      size_t end = pointer.find('/', start);
      std::string part =
          pointer.substr(start, end == std::string::npos ? std::string::npos : end - start);
      for (size_t p; (p = part.find("~1")) != std::string::npos;) part.replace(p, 2, "/");
      for (size_t p; (p = part.find("~0")) != std::string::npos;) part.replace(p, 2, "~");
      if (!node->is_object() || !node->contains(part))
        refuse(path, "$ref", "'" + target + "' does not resolve");
      node = &(*node)[part];
      if (end == std::string::npos) break;
      start = end + 1;
    }
    std::string name = "ref" + std::to_string(ref_rules_.size());
    ref_rules_.emplace(target, name);  // before visiting: the target may refer to itself
    define(name, visit(*node, target));
    return name;
  }

  std::string typed(const json& s, const std::string& type, const std::string& path) {
    if (type == "string") return string_of(s, path);
    if (type == "integer") return "integer";
    if (type == "number") return "number";
    if (type == "boolean") return "boolean";
    if (type == "null") return "null";
    if (type == "object") return object_of(s, path);
    if (type == "array") return array_of(s, path);
    refuse(path, "type", "unknown type '" + type + "'");
  }

  std::string string_of(const json& s, const std::string& path) {
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) refuse(path, "pattern", "must be a string");
      if (s.contains("minLength") || s.contains("maxLength"))
        refuse(path, "pattern", "together with minLength/maxLength is not supported");
      std::string expr;
      try {
        expr = regex_to_gbnf_expr(s["pattern"].get<std::string>(), true);
      } catch (const Error& e) {
        refuse(path, "pattern", e.what());
      }
      return add_rule("\"\\\"\" " + expr + " \"\\\"\"");
    }
    int min = bound(s, "minLength", path, 0);
    int max = bound(s, "maxLength", path, -1);
    if (min == 0 && max < 0) return "string";
    if (max >= 0 && max < min) refuse(path, "maxLength", "is below minLength");
    std::string rep = "{" + std::to_string(min) + "," + (max < 0 ? "" : std::to_string(max)) + "}";
    return add_rule(R"("\"" ( [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) ))" +
                    rep + R"( "\"")");
  }

  std::string object_of(const json& s, const std::string& path) {
    const json empty = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) refuse(path, "properties", "must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) refuse(path, "required", "must be an array");
      for (const json& r : s["required"]) {
        if (!r.is_string()) refuse(path, "required", "must list property names");
        required.insert(r.get<std::string>());
      }
    }
    // Properties in schema order, then required names the schema does not describe (any value).
    std::vector<std::string> members;  // "key" ws ":" ws value ws
    std::vector<bool> is_required;
    for (const auto& [k, v] : props.items()) {
      std::string value = visit(v, path + "/properties/" + k);
      members.push_back(literal(json(k)) + " ws \":\" ws " + value + " ws");
      is_required.push_back(required.contains(k));
    }
    for (const std::string& r : required)
      if (!props.contains(r)) {
        members.push_back(literal(json(r)) + " ws \":\" ws value ws");
        is_required.push_back(true);
      }
    const json* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (extra && !extra->is_boolean() && !extra->is_object())
      refuse(path, "additionalProperties", "must be a boolean or a schema");
    if (members.empty()) {
      if (extra && extra->is_boolean() && !extra->get<bool>()) return "\"{\" ws \"}\"";
      std::string v =
          extra && extra->is_object() ? visit(*extra, path + "/additionalProperties") : "value";
      std::string m = add_rule("string ws \":\" ws " + v + " ws");
      return add_rule("\"{\" ws ( " + m + " ( \",\" ws " + m + " )* )? \"}\"");
    }
    // Extra keys are never generated: the output still satisfies any additionalProperties.
    // first[i]: members i.. with none written yet; rest[i]: members i.., each after a comma.
    size_t n = members.size();
    std::vector<std::string> member_rule(n), first(n + 1), rest(n + 1);
    for (size_t i = 0; i < n; ++i) member_rule[i] = add_rule(members[i]);
    first[n] = rest[n] = "\"\"";
    for (size_t i = n; i-- > 0;) {
      std::string after_comma = "\",\" ws " + member_rule[i] + " " + rest[i + 1];
      rest[i] = add_rule(is_required[i] ? after_comma : "( " + after_comma + " ) | " + rest[i + 1]);
      std::string here = member_rule[i] + " " + rest[i + 1];
      first[i] = add_rule(is_required[i] ? here : "( " + here + " ) | " + first[i + 1]);
    }
    return add_rule("\"{\" ws " + first[0] + " \"}\"");
  }

  std::string array_of(const json& s, const std::string& path) {
    std::string item = s.contains("items") ? visit(s["items"], path + "/items") : "value";
    int min = bound(s, "minItems", path, 0);
    int max = bound(s, "maxItems", path, -1);
    if (max >= 0 && max < min) refuse(path, "maxItems", "is below minItems");
    std::string more = "\",\" ws " + item + " ws";
    if (max == 0) return "\"[\" ws \"]\"";
    std::string tail = "( " + more + " ){" + std::to_string(min > 0 ? min - 1 : 0) + "," +
                       (max < 0 ? "" : std::to_string(max - 1)) + "}";
    std::string items = item + " ws " + tail;
    return add_rule("\"[\" ws " + (min == 0 ? "( " + items + " )?" : items) + " \"]\"");
  }
};

}  // namespace

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const SchemaLimits& limits) {
  return SchemaConverter(schema, limits).convert();
}

std::string json_object_gbnf() { return std::string("root ::= object\n") + kCommonRules; }

}  // namespace tessera::grammar
