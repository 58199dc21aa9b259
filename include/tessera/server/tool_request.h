// The tool-calling fields of a chat request (internal to the server module): `tools`,
// `tool_choice` and `parallel_tool_calls` validated into a ToolRequest, and the grammar that
// "required" and a named function decode under (the template family's call syntax around each
// function's parameter schema). Pure functions; the request owns the ToolRequest.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/server/tool_calls.h"

namespace tessera::server {

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ToolFunction {
  std::string name;
  std::string parameters_gbnf;  // its parameter schema as GBNF (any object when it has none)
};

struct ToolRequest {
  ToolFormat format = ToolFormat::kNone;  // of the served model's chat template
  ToolChoice choice = ToolChoice::kNone;  // kNone also when the request has no tools
  std::string named;                      // kNamed: the function
  bool parallel = true;                   // parallel_tool_calls
  std::vector<ToolFunction> functions;
  // The tools as the template receives them: null for tool_choice "none" (not offered).
  nlohmann::ordered_json template_tools = nullptr;
  // Whether the output is parsed for tool calls.
  bool parse_output() const { return choice != ToolChoice::kNone && format != ToolFormat::kNone; }
};

// Validates the fields; 400 naming `tools`, `tool_choice` or `parallel_tool_calls` otherwise.
// `constrained`: the request also has a response_format / guided_* constraint (its output is not
// parsed for calls; "required" and a named function are refused with it).
ToolRequest parse_tool_request(const nlohmann::ordered_json& body, ToolFormat format,
                               bool constrained);

// GBNF for ToolChoice kRequired (one or, with parallel, more calls to any of the functions) or
// kNamed (one call to that function, or more with parallel); "" for kNone and kAuto.
std::string tool_call_grammar(const ToolRequest& r);

// Renames every rule of a GBNF text `prefix + name` (literals, classes and comments untouched),
// so that several front ends' grammars can live in one.
std::string prefix_gbnf_rules(std::string_view gbnf, std::string_view prefix);

}  // namespace tessera::server
