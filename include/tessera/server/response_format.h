// The structured-output fields of an OpenAI request → the grammar its output must match. OpenAI's
// `response_format` ({type: text | json_object | json_schema}) and vLLM's `guided_json`,
// `guided_regex`, `guided_choice` and `guided_grammar` (GBNF) go through the grammar module's
// front ends; at most one may constrain a request. Stateless.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tessera::server {

// GBNF text for the request's constraint, "" when it has none. A field the front ends cannot
// honour (a bad schema, an unsupported keyword, a bad regex or grammar) is a 400 whose `param`
// names the field and whose message names the keyword.
std::string parse_output_constraint(const nlohmann::ordered_json& body);

}  // namespace tessera::server
