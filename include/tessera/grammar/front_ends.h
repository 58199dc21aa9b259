// Front ends onto the grammar engine: each turns what a request asks for (a JSON Schema, "any
// JSON object", a regex, a list of choices) into GBNF text for Grammar::parse. They refuse what
// they do not support with tessera::Error(kInvalidArgument) naming the keyword or construct,
// never dropping it silently. Stateless functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>

namespace tessera::grammar {

struct SchemaLimits {
  int max_items = 1000;     // the largest maxItems / maxLength honoured as a bound
  size_t max_rules = 5000;  // rules a schema may expand to
};

// JSON Schema (the subset OpenAI's strict mode allows, plus $ref/$defs, enum, const, anyOf,
// simple `pattern`s, minItems/maxItems, min/maxLength, additionalProperties) → GBNF. Objects are
// written with their properties in schema order, required ones always, optional ones maybe.
// Whitespace between tokens is bounded (one space, or a newline and up to 12 spaces).
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema,
                                const SchemaLimits& limits = {});
// Any JSON object (response_format json_object).
std::string json_object_gbnf();
// A regex (literals, classes, ., |, groups, * + ? {m,n}, \d \w \s and their negations), matched
// whole (^ and $ at the ends are accepted and mean nothing more).
std::string regex_to_gbnf(std::string_view regex);
// Exactly one of the strings.
std::string choice_to_gbnf(std::span<const std::string> choices);

// The regex as one GBNF expression; json_string: the text sits inside a JSON string, so '"',
// '\\' and control characters are excluded from classes and refused as literals.
std::string regex_to_gbnf_expr(std::string_view regex, bool json_string);

}  // namespace tessera::grammar
