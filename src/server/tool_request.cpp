// tools / tool_choice / parallel_tool_calls → ToolRequest, and the grammar of a forced call (see
// tool_request.h). Every refusal names its field; a parameter schema the JSON Schema front end
// cannot honour is refused here, with its keyword, rather than when a call is forced.
#include "tessera/server/tool_request.h"

#include <cctype>
#include <set>

#include "tessera/core/error.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/grammar.h"
#include "tessera/server/api_error.h"

namespace tessera::server {
namespace {

using Json = nlohmann::ordered_json;

const Json* present(const Json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

// OpenAI's rule for function names: letters, digits, '_' and '-', at most 64.
bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (unsigned char c : n) {
    if (!std::isalnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

ToolFunction parse_tool(const Json& t, size_t i) {
  const std::string where = "tools[" + std::to_string(i) + "]";
  if (!t.is_object()) bad_request("tools", where + " must be an object");
  const Json* type = present(t, "type");
  if (!type || *type != "function")
    bad_request("tools", where + ".type must be \"function\" (the only tool type supported)");
  const Json* fn = present(t, "function");
  if (!fn || !fn->is_object()) bad_request("tools", where + ".function must be an object");
  const Json* name = present(*fn, "name");
  if (!name || !name->is_string() || !valid_name(name->get<std::string>()))
    bad_request("tools", where +
                             ".function.name must be a string of 1 to 64 letters, digits, '_' "
                             "or '-'");
  if (const Json* d = present(*fn, "description"); d && !d->is_string())
    bad_request("tools", where + ".function.description must be a string");
  if (const Json* s = present(*fn, "strict"); s && !s->is_boolean())
    bad_request("tools", where + ".function.strict must be a boolean");
  ToolFunction f{.name = name->get<std::string>()};
  const Json* params = present(*fn, "parameters");
  try {
    if (!params) {
      f.parameters_gbnf = grammar::json_object_gbnf();
    } else {
      if (!params->is_object())
        bad_request("tools", where + ".function.parameters must be a JSON Schema object");
      f.parameters_gbnf = grammar::json_schema_to_gbnf(*params);
      (void)grammar::Grammar::parse(f.parameters_gbnf);
    }
  } catch (const Error& e) {
    bad_request("tools", where + ".function.parameters: " + e.what());
  }
  return f;
}

// The call object of one function in the family's syntax, as a GBNF sequence; `args` is the
// rule of its parameters.
std::string call_object(ToolFormat format, const std::string& name, const std::string& args) {
  const char* key = format == ToolFormat::kLlama3 ? "parameters" : "arguments";
  return grammar::gbnf_literal("{\"name\": \"" + name + "\", \"" + key + "\": ") + " " + args +
         " \"}\"";
}

}  // namespace

ToolRequest parse_tool_request(const Json& body, ToolFormat format, bool constrained) {
  ToolRequest r;
  r.format = format;
  const Json* tools = present(body, "tools");
  if (tools) {
    if (!tools->is_array()) bad_request("tools", "tools must be a list");
    std::set<std::string> names;
    for (size_t i = 0; i < tools->size(); ++i) {
      r.functions.push_back(parse_tool((*tools)[i], i));
      if (!names.insert(r.functions.back().name).second)
        bad_request("tools", "tools[" + std::to_string(i) + "]: function \"" +
                                 r.functions.back().name + "\" is defined twice");
    }
  }
  if (const Json* p = present(body, "parallel_tool_calls")) {
    if (!p->is_boolean())
      bad_request("parallel_tool_calls", "parallel_tool_calls must be a boolean");
    r.parallel = p->get<bool>();
  }
  const bool have_tools = !r.functions.empty();
  r.choice = have_tools ? ToolChoice::kAuto : ToolChoice::kNone;
  if (const Json* tc = present(body, "tool_choice")) {
    if (tc->is_string()) {
      const std::string s = tc->get<std::string>();
      if (s == "none") {
        r.choice = ToolChoice::kNone;
      } else if (s == "auto") {
        r.choice = have_tools ? ToolChoice::kAuto : ToolChoice::kNone;
      } else if (s == "required") {
        r.choice = ToolChoice::kRequired;
      } else {
        bad_request("tool_choice", "tool_choice \"" + s +
                                       "\" is not one of \"none\", \"auto\", \"required\" or "
                                       "{\"type\": \"function\", \"function\": {\"name\": ...}}");
      }
    } else if (tc->is_object()) {
      const Json* type = present(*tc, "type");
      const Json* fn = present(*tc, "function");
      const Json* name = fn && fn->is_object() ? present(*fn, "name") : nullptr;
      if (!type || *type != "function" || !name || !name->is_string())
        bad_request("tool_choice",
                    "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
      r.choice = ToolChoice::kNamed;
      r.named = name->get<std::string>();
      bool found = false;
      for (const auto& f : r.functions) found = found || f.name == r.named;
      if (!found)
        bad_request("tool_choice", "tool_choice names function \"" + r.named +
                                       "\", which is not one of the request's tools");
    } else {
      bad_request("tool_choice", "tool_choice must be a string or an object");
    }
  }
  const bool forced = r.choice == ToolChoice::kRequired || r.choice == ToolChoice::kNamed;
  if (forced && !have_tools)
    bad_request("tool_choice", "tool_choice " + present(body, "tool_choice")->dump() +
                                   " needs a non-empty tools list");
  if (r.choice != ToolChoice::kNone && format == ToolFormat::kNone)
    bad_request("tools",
                "the served model's chat template defines no tool-call format this server parses "
                "(Hermes/Qwen <tool_call>, Llama 3 JSON, Mistral [TOOL_CALLS]); send "
                "tool_choice \"none\" or no tools");
  if (forced && constrained)
    bad_request("tool_choice", "tool_choice " + present(body, "tool_choice")->dump() +
                                   " cannot be combined with response_format or guided_*");
  // A constrained output is the constraint's format, not calls: offered, never parsed.
  if (constrained && r.choice == ToolChoice::kAuto) r.choice = ToolChoice::kNone;
  if (tools && present(body, "tool_choice") && *present(body, "tool_choice") == "none") {
    r.template_tools = nullptr;  // "none": the model is not offered the tools
  } else if (tools) {
    r.template_tools = *tools;
  }
  return r;
}

std::string tool_call_grammar(const ToolRequest& r) {
  if (r.choice != ToolChoice::kRequired && r.choice != ToolChoice::kNamed) return "";
  std::string rules, alts;
  for (size_t i = 0; i < r.functions.size(); ++i) {
    const ToolFunction& f = r.functions[i];
    if (r.choice == ToolChoice::kNamed && f.name != r.named) continue;
    const std::string prefix = "t" + std::to_string(i) + "-";
    rules += prefix_gbnf_rules(f.parameters_gbnf, prefix);
    rules += prefix + "call ::= " + call_object(r.format, f.name, prefix + "root") + "\n";
    alts += (alts.empty() ? "" : " | ") + prefix + "call";
  }
  std::string one, sep, open, close;
  switch (r.format) {
    case ToolFormat::kHermes:
      one = "\"<tool_call>\\n\" ( " + alts + " ) \"\\n</tool_call>\"";
      sep = "\"\\n\"";
      break;
    case ToolFormat::kMistral:  // [TOOL_CALLS] is a special token: the grammar cannot write it
      one = "( " + alts + " )";
      sep = "\", \"";
      open = "\"[\" ";
      close = " \"]\"";
      break;
    case ToolFormat::kLlama3:
      one = "( " + alts + " )";
      sep = "\"; \"";
      break;
    case ToolFormat::kNone:
      fail(ErrorCode::kInvalidArgument, "no tool-call format to constrain to");
  }
  std::string root = "root ::= " + open + "tool-call";
  if (r.parallel) root += " ( " + sep + " tool-call )*";
  return root + close + "\ntool-call ::= " + one + "\n" + rules;
}

std::string prefix_gbnf_rules(std::string_view g, std::string_view prefix) {
  std::string out;
  out.reserve(g.size() * 2);
  size_t i = 0;
  auto copy_delimited = [&](char close) {  // a literal or class, escapes included
    out += g[i++];
    while (i < g.size() && g[i] != close) {
      if (g[i] == '\\' && i + 1 < g.size()) out += g[i++];
      out += g[i++];
    }
    if (i < g.size()) out += g[i++];
  };
  while (i < g.size()) {
    const char c = g[i];
    if (c == '"') {
      copy_delimited('"');
    } else if (c == '[') {
      copy_delimited(']');
    } else if (c == '{') {
      copy_delimited('}');  // {m,n}
    } else if (c == '#') {
      while (i < g.size() && g[i] != '\n') out += g[i++];
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      out += prefix;
      while (i < g.size() &&
             (std::isalnum(static_cast<unsigned char>(g[i])) || g[i] == '_' || g[i] == '-'))
        out += g[i++];
    } else {
      out += g[i++];
    }
  }
  return out;
}

}  // namespace tessera::server
