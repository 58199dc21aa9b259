// response_format and guided_* → GBNF (see response_format.h).
#include "tessera/server/response_format.h"

#include <string_view>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/grammar.h"
#include "tessera/json/bounded_json.h"
#include "tessera/server/api_error.h"

namespace tessera::server {
namespace {

using Json = nlohmann::ordered_json;

const Json* present(const Json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string schema_grammar(const Json& schema, const std::string& param) {
  if (!schema.is_object() && !schema.is_boolean())
    bad_request(param, param + " must be a JSON Schema object");
  return grammar::json_schema_to_gbnf(schema);
}

// The constraint of one field, as GBNF ("" for response_format text).
std::string convert(const std::string& key, const Json& v) {
  if (key == "response_format") {
    if (!v.is_object() || !v.contains("type") || !v["type"].is_string())
      bad_request(key, "response_format must be an object with a string 'type'");
    const std::string type = v["type"].get<std::string>();
    if (type == "text") return "";
    if (type == "json_object") return grammar::json_object_gbnf();
    if (type != "json_schema")
      bad_request(key, "response_format type '" + type +
                           "' is not supported (supported: text, json_object, json_schema)");
    if (!v.contains("json_schema") || !v["json_schema"].is_object() ||
        !v["json_schema"].contains("schema"))
      bad_request(key, "response_format json_schema needs json_schema.schema");
    return schema_grammar(v["json_schema"]["schema"], key);
  }
  if (key == "guided_json") {
    if (v.is_string())
      return schema_grammar(
          json::parse_ordered(v.get<std::string>(), json::kRequestLimits, "guided_json"), key);
    return schema_grammar(v, key);
  }
  if (key == "guided_regex") {
    if (!v.is_string()) bad_request(key, "guided_regex must be a string");
    return grammar::regex_to_gbnf(v.get<std::string>());
  }
  if (key == "guided_choice") {
    if (!v.is_array()) bad_request(key, "guided_choice must be a list of strings");
    std::vector<std::string> choices;
    for (const Json& c : v) {
      if (!c.is_string()) bad_request(key, "guided_choice must be a list of strings");
      choices.push_back(c.get<std::string>());
    }
    return grammar::choice_to_gbnf(choices);
  }
  if (!v.is_string()) bad_request(key, "guided_grammar must be a string (GBNF)");
  return v.get<std::string>();
}

}  // namespace

std::string parse_output_constraint(const Json& body) {
  std::string key;
  const Json* value = nullptr;
  for (const char* k :
       {"response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar"}) {
    const Json* v = present(body, k);
    if (!v) continue;
    if (value) bad_request(k, std::string(k) + " and " + key + " cannot be combined");
    key = k;
    value = v;
  }
  if (!value) return "";
  std::string gbnf;
  try {
    gbnf = convert(key, *value);
    if (!gbnf.empty()) (void)grammar::Grammar::parse(gbnf);  // refuse here, naming the field
  } catch (const Error& e) {
    bad_request(key, key + ": " + e.what());
  }
  return gbnf;
}

}  // namespace tessera::server
