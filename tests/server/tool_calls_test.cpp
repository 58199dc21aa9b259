// Tool calling: the output parsers of each family (whole, fed in random pieces, malformed, cut
// off, adversarial long output), format detection from the repository's template fixtures, the
// validation of tools / tool_choice / parallel_tool_calls, and the grammar of "required" and
// named calls checked as a recognizer over single bytes (what it accepts parses back into calls
// whose arguments obey the schema; what breaks the schema is refused).
#include "tessera/server/tool_calls.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "tessera/grammar/matcher.h"
#include "tessera/server/api_error.h"
#include "tessera/server/tool_request.h"

namespace tessera::server::testing {
namespace {

using ojson = nlohmann::ordered_json;

// Feeds `text` in random pieces, as detokenized deltas arrive, and gathers everything released.
ToolCallUpdate parse_in_pieces(ToolFormat f, const std::string& text, uint32_t seed) {
  std::mt19937 rng(seed);
  ToolCallParser p(f);
  ToolCallUpdate all;
  size_t at = 0;
  while (at < text.size()) {
    const size_t n = std::min(text.size() - at, size_t(rng() % 5));
    p.feed(std::string_view(text).substr(at, n), all);
    at += n;
  }
  p.finish(all);
  return all;
}

void expect_same_any_split(ToolFormat f, const std::string& text) {
  const ToolCallUpdate whole = ToolCallParser::parse(f, text);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const ToolCallUpdate split = parse_in_pieces(f, text, seed);
    EXPECT_EQ(split.content, whole.content) << text;
    ASSERT_EQ(split.calls.size(), whole.calls.size()) << text;
    for (size_t i = 0; i < split.calls.size(); ++i) {
      EXPECT_EQ(split.calls[i].name, whole.calls[i].name);
      EXPECT_EQ(split.calls[i].arguments, whole.calls[i].arguments);
    }
  }
}

TEST(ToolCalls, Hermes) {
  const std::string out =
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris {}\\\" x\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", "
      "\"arguments\": {}}\n</tool_call>";
  const auto u = ToolCallParser::parse(ToolFormat::kHermes, out);
  EXPECT_EQ(u.content, "Let me check.\n\n");  // the text outside the calls, newline between them
  ASSERT_EQ(u.calls.size(), 2u);
  EXPECT_EQ(u.calls[0].name, "get_weather");
  EXPECT_EQ(ojson::parse(u.calls[0].arguments),
            ojson::parse(R"({"city": "Paris {}\" x", "days": [1, 2]})"));
  EXPECT_EQ(u.calls[1].name, "time");
  EXPECT_EQ(u.calls[1].arguments, "{}");
  expect_same_any_split(ToolFormat::kHermes, out);
}

TEST(ToolCalls, HermesTextOnlyAndNearMisses) {
  for (const std::string t :
       {"plain answer", "a < b and <tool> and <tool_cal", "<<tool_call", "", "x <tool_call>"}) {
    const auto u = ToolCallParser::parse(ToolFormat::kHermes, t);
    EXPECT_TRUE(u.calls.empty()) << t;
    EXPECT_EQ(u.content, t);  // nothing lost, nothing invented
    expect_same_any_split(ToolFormat::kHermes, t);
  }
  // "<<tool_call>" opens a call after one '<' of text.
  const auto u = ToolCallParser::parse(
      ToolFormat::kHermes, "<<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>");
  EXPECT_EQ(u.content, "<");
  ASSERT_EQ(u.calls.size(), 1u);
}

TEST(ToolCalls, MalformedCallsAreGivenBackAsContent) {
  for (const std::string t :
       {"<tool_call>\n{\"name\": 3, \"arguments\": {}}\n</tool_call>",       // name not a string
        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                    // no name
        "<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>",  // not an object
        "<tool_call>\n{\"name\": \"f\" \"arguments\": {}}\n</tool_call>",    // bad JSON
        "<tool_call>\nnot json</tool_call>",                                 // no object
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"unterminated"}) {  // cut off
    const auto u = ToolCallParser::parse(ToolFormat::kHermes, t);
    EXPECT_TRUE(u.calls.empty()) << t;
    EXPECT_NE(u.content.find("<tool_call>"), std::string::npos) << t;
    expect_same_any_split(ToolFormat::kHermes, t);
  }
  // A call that stands, then garbage instead of the closing tag: the call stays, the garbage is
  // content.
  const auto u = ToolCallParser::parse(ToolFormat::kHermes,
                                       "<tool_call>{\"name\": \"f\", \"arguments\": {}} oops");
  ASSERT_EQ(u.calls.size(), 1u);
  EXPECT_EQ(u.content,
            " o"
            "ops");
  // Cut right before the closing tag (max_tokens): the complete call stands.
  const auto cut = ToolCallParser::parse(
      ToolFormat::kHermes, "<tool_call>{\"name\": \"f\", \"arguments\": {}}\n</tool_");
  ASSERT_EQ(cut.calls.size(), 1u);
  EXPECT_EQ(cut.content, "");
}

TEST(ToolCalls, Llama3) {
  const std::string a = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}";
  auto u = ToolCallParser::parse(ToolFormat::kLlama3, "  " + a);
  ASSERT_EQ(u.calls.size(), 1u);
  EXPECT_EQ(u.calls[0].name, "get_weather");
  EXPECT_EQ(u.calls[0].arguments, R"({"city":"Oslo"})");
  EXPECT_EQ(u.content, "");
  u = ToolCallParser::parse(ToolFormat::kLlama3, "<|python_tag|>" + a + "; " + a);
  EXPECT_EQ(u.calls.size(), 2u);
  expect_same_any_split(ToolFormat::kLlama3, "<|python_tag|>" + a + "; " + a);
  // Text first: an answer, even if JSON follows.
  u = ToolCallParser::parse(ToolFormat::kLlama3, "Sure: " + a);
  EXPECT_TRUE(u.calls.empty());
  EXPECT_EQ(u.content, "Sure: " + a);
  // A JSON answer that is not a call is content.
  u = ToolCallParser::parse(ToolFormat::kLlama3, "{\"answer\": 42}");
  EXPECT_TRUE(u.calls.empty());
  EXPECT_EQ(u.content, "{\"answer\": 42}");
  expect_same_any_split(ToolFormat::kLlama3, "{\"answer\": 42}");
}

TEST(ToolCalls, Mistral) {
  const std::string calls =
      "[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {}}]";
  for (const std::string& t : {"[TOOL_CALLS] " + calls, calls, " " + calls}) {
    const auto u = ToolCallParser::parse(ToolFormat::kMistral, t);
    ASSERT_EQ(u.calls.size(), 2u) << t;
    EXPECT_EQ(u.calls[0].name, "a");
    EXPECT_EQ(u.calls[0].arguments, R"({"x":1})");
    EXPECT_EQ(u.calls[1].name, "b");
    EXPECT_EQ(u.content, "");
    expect_same_any_split(ToolFormat::kMistral, t);
  }
  auto u = ToolCallParser::parse(ToolFormat::kMistral, "[1, 2, 3] is a list");
  EXPECT_TRUE(u.calls.empty());
  EXPECT_EQ(u.content, "[1, 2, 3] is a list");
  u = ToolCallParser::parse(ToolFormat::kMistral, "[TOOL");
  EXPECT_EQ(u.content, "[TOOL");
}

TEST(ToolCalls, NoFormatIsAllContent) {
  const auto u = ToolCallParser::parse(ToolFormat::kNone, "<tool_call>{\"name\": \"f\"}");
  EXPECT_TRUE(u.calls.empty());
  EXPECT_EQ(u.content, "<tool_call>{\"name\": \"f\"}");
}

TEST(ToolCalls, HoldsBackOnlyWhatMayOpenACall) {
  ToolCallParser p(ToolFormat::kHermes);
  ToolCallUpdate u;
  p.feed("Hello <tool", u);
  EXPECT_EQ(u.content, "Hello ");  // "<tool" may still become <tool_call>
  p.feed("box>", u);
  EXPECT_EQ(u.content, "Hello <toolbox>");
  p.feed("<tool_call>{\"name\": \"f\", ", u);
  EXPECT_EQ(u.content, "Hello <toolbox>");
  EXPECT_TRUE(u.calls.empty());
  p.feed("\"arguments\": {}}", u);
  ASSERT_EQ(u.calls.size(), 1u);  // released as soon as the object closes
}

// Adversarial output: deep nesting, long strings, endless near-markers and a call over the size
// cap all finish in time linear in the input and give everything back as content.
TEST(ToolCalls, AdversarialOutputIsLinearAndBounded) {
  const size_t n = 4 << 20;
  std::vector<std::pair<ToolFormat, std::string>> cases = {
      {ToolFormat::kHermes, "<tool_call>{" + std::string(n, '[')},
      {ToolFormat::kHermes, "<tool_call>{\"name\": \"" + std::string(n, 'x')},
      {ToolFormat::kHermes,
       [&] {
         std::string s;
         while (s.size() < n) s += "<tool_cal";
         return s;
       }()},
      {ToolFormat::kMistral, "[" + std::string(n, '{')},
      {ToolFormat::kLlama3, std::string(n, ' ') + "x"},
  };
  for (const auto& [f, text] : cases) {
    const auto t0 = std::chrono::steady_clock::now();
    ToolCallParser p(f, 1 << 16);
    ToolCallUpdate u;
    for (size_t at = 0; at < text.size(); at += 7) p.feed(std::string_view(text).substr(at, 7), u);
    p.finish(u);
    EXPECT_TRUE(u.calls.empty());
    EXPECT_EQ(u.content, text);
    // Not a timing test of speed: a quadratic parser would take minutes on 4 MiB fed 7 bytes at
    // a time; a linear one takes well under a second.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  }
}

std::string read_template(const std::string& name) {
  std::ifstream f(std::string(TESSERA_SOURCE_DIR) + "/tests/data/templates/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(ToolCalls, FormatDetectedFromTemplateFixtures) {
  EXPECT_EQ(detect_tool_format(read_template("qwen2.5.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(read_template("llama3.jinja")), ToolFormat::kLlama3);
  EXPECT_EQ(detect_tool_format(read_template("mistral-v0.3.jinja")), ToolFormat::kMistral);
  for (const char* none : {"smollm2.jinja", "llama2.jinja", "gemma.jinja", "phi3.jinja"}) {
    const std::string src = read_template(none);
    ASSERT_FALSE(src.empty()) << none;
    EXPECT_EQ(detect_tool_format(src), ToolFormat::kNone) << none;
  }
}

const ojson kWeather = ojson::parse(R"({"type": "function", "function": {
  "name": "get_weather", "description": "weather of a city",
  "parameters": {"type": "object", "properties": {
      "city": {"type": "string", "maxLength": 12},
      "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"], "additionalProperties": false}}})");
const ojson kTime = ojson::parse(R"({"type": "function", "function": {"name": "get_time"}})");

ojson body_with(ojson tool_choice) {
  ojson b = {{"tools", ojson::array({kWeather, kTime})}};
  if (!tool_choice.is_null()) b["tool_choice"] = std::move(tool_choice);
  return b;
}

std::string refusal(const ojson& body, ToolFormat f, bool constrained = false) {
  try {
    parse_tool_request(body, f, constrained);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.param() + ": " + e.what();
  }
  return "";
}

TEST(ToolRequest, ChoicesAndDefaults) {
  auto r = parse_tool_request(body_with(nullptr), ToolFormat::kHermes, false);
  EXPECT_EQ(r.choice, ToolChoice::kAuto);
  EXPECT_TRUE(r.parse_output());
  EXPECT_EQ(r.template_tools.size(), 2u);
  EXPECT_EQ(tool_call_grammar(r), "");
  r = parse_tool_request(body_with("none"), ToolFormat::kHermes, false);
  EXPECT_EQ(r.choice, ToolChoice::kNone);
  EXPECT_TRUE(r.template_tools.is_null());  // not offered
  r = parse_tool_request(ojson::object(), ToolFormat::kNone, false);
  EXPECT_FALSE(r.parse_output());
  r = parse_tool_request(body_with({{"type", "function"}, {"function", {{"name", "get_time"}}}}),
                         ToolFormat::kMistral, false);
  EXPECT_EQ(r.choice, ToolChoice::kNamed);
  EXPECT_EQ(r.named, "get_time");
  // With a response_format, "auto" offers the tools but the output is the constraint's.
  r = parse_tool_request(body_with("auto"), ToolFormat::kHermes, true);
  EXPECT_FALSE(r.parse_output());
  // tools on a template without a tool format: only "none" is honest.
  EXPECT_EQ(parse_tool_request(body_with("none"), ToolFormat::kNone, false).choice,
            ToolChoice::kNone);
}

TEST(ToolRequest, BadFieldsAreNamed) {
  auto with_tool = [](ojson t) { return ojson{{"tools", ojson::array({std::move(t)})}}; };
  const ToolFormat h = ToolFormat::kHermes;
  EXPECT_NE(refusal({{"tools", "x"}}, h).find("tools: tools must be a list"), std::string::npos);
  EXPECT_NE(refusal(with_tool({{"type", "retrieval"}}), h).find("tools[0].type"),
            std::string::npos);
  EXPECT_NE(refusal(with_tool({{"type", "function"}, {"function", {{"name", "a b"}}}}), h)
                .find("tools[0].function.name"),
            std::string::npos);
  ojson bad_schema = kWeather;
  bad_schema["function"]["parameters"]["patternProperties"] = ojson::object();
  const std::string e = refusal(with_tool(bad_schema), h);
  EXPECT_NE(e.find("tools: tools[0].function.parameters"), std::string::npos) << e;
  EXPECT_NE(e.find("patternProperties"), std::string::npos) << e;
  EXPECT_NE(refusal({{"tools", ojson::array({kTime, kTime})}}, h).find("defined twice"),
            std::string::npos);
  EXPECT_NE(refusal(body_with("sometimes"), h).find("tool_choice: "), std::string::npos);
  EXPECT_NE(refusal(body_with({{"type", "function"}, {"function", {{"name", "nope"}}}}), h)
                .find("not one of the request's tools"),
            std::string::npos);
  EXPECT_NE(refusal({{"tool_choice", "required"}}, h).find("needs a non-empty tools list"),
            std::string::npos);
  EXPECT_NE(refusal(body_with("required"), h, true).find("cannot be combined"), std::string::npos);
  EXPECT_NE(refusal(body_with("auto"), ToolFormat::kNone).find("tools: "), std::string::npos);
  ojson p = body_with("auto");
  p["parallel_tool_calls"] = "yes";
  EXPECT_NE(refusal(p, h).find("parallel_tool_calls: "), std::string::npos);
}

std::shared_ptr<const grammar::CompiledGrammar> byte_grammar(const std::string& gbnf) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  bytes.emplace_back();
  auto vocab =
      std::make_shared<const grammar::Vocabulary>(std::move(bytes), std::vector<int32_t>{256});
  return std::make_shared<const grammar::CompiledGrammar>(grammar::Grammar::parse(gbnf), vocab);
}

// 0: refused at some byte; 1: a proper prefix; 2: a whole sentence.
int recognize(const std::shared_ptr<const grammar::CompiledGrammar>& g, const std::string& s) {
  grammar::Matcher m(g);
  for (char c : s)
    if (!m.accept(static_cast<uint8_t>(c))) return 0;
  return m.is_complete() ? 2 : 1;
}

TEST(ToolGrammar, RequiredAndNamedPerFamily) {
  const std::string weather =
      R"({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}})";
  const std::string time = R"({"name": "get_time", "arguments": {"tz": [1, {"a": null}]}})";
  const std::string bad_unit =
      R"({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "k"}})";
  const std::string long_city =
      R"({"name": "get_weather", "arguments": {"city": "Llanfairpwllgwyngyll", "unit": "c"}})";
  auto hermes = [](const std::string& o) { return "<tool_call>\n" + o + "\n</tool_call>"; };

  auto r = parse_tool_request(body_with("required"), ToolFormat::kHermes, false);
  auto g = byte_grammar(tool_call_grammar(r));
  EXPECT_EQ(recognize(g, hermes(weather)), 2);
  EXPECT_EQ(recognize(g, hermes(time)), 2);
  EXPECT_EQ(recognize(g, hermes(weather) + "\n" + hermes(time)), 2);  // parallel by default
  EXPECT_EQ(recognize(g, hermes(bad_unit)), 0);
  EXPECT_EQ(recognize(g, hermes(long_city)), 0);  // maxLength 12
  EXPECT_EQ(recognize(g, "Sure! " + hermes(weather)), 0);
  EXPECT_EQ(recognize(g, ""), 1);  // nothing but a call may start: not complete
  // What the grammar accepts, the parser reads back.
  const auto u = ToolCallParser::parse(ToolFormat::kHermes, hermes(weather) + "\n" + hermes(time));
  ASSERT_EQ(u.calls.size(), 2u);
  EXPECT_EQ(u.calls[0].name, "get_weather");

  ojson b = body_with({{"type", "function"}, {"function", {{"name", "get_weather"}}}});
  b["parallel_tool_calls"] = false;
  r = parse_tool_request(b, ToolFormat::kHermes, false);
  g = byte_grammar(tool_call_grammar(r));
  EXPECT_EQ(recognize(g, hermes(weather)), 2);
  EXPECT_EQ(recognize(g, hermes(time)), 0);            // named: only that function
  EXPECT_EQ(recognize(g, hermes(weather) + "\n"), 0);  // parallel_tool_calls: false

  r = parse_tool_request(body_with("required"), ToolFormat::kLlama3, false);
  g = byte_grammar(tool_call_grammar(r));
  const std::string llama =
      R"({"name": "get_weather", "parameters": {"city": "Oslo", "unit": "f"}})";
  EXPECT_EQ(recognize(g, llama), 2);
  EXPECT_EQ(recognize(g, weather), 0);  // Llama 3 says "parameters"
  EXPECT_EQ(ToolCallParser::parse(ToolFormat::kLlama3, llama).calls.size(), 1u);

  r = parse_tool_request(body_with("required"), ToolFormat::kMistral, false);
  g = byte_grammar(tool_call_grammar(r));
  EXPECT_EQ(recognize(g, "[" + weather + ", " + time + "]"), 2);
  EXPECT_EQ(recognize(g, "[" + bad_unit + "]"), 0);
  EXPECT_EQ(
      ToolCallParser::parse(ToolFormat::kMistral, "[" + weather + ", " + time + "]").calls.size(),
      2u);
}

TEST(ToolGrammar, PrefixingRenamesRulesOnly) {
  EXPECT_EQ(prefix_gbnf_rules("root ::= \"a b\" [a-z]{0,3} ws # root\nws ::= [ ]?\n", "p-"),
            "p-root ::= \"a b\" [a-z]{0,3} p-ws # root\np-ws ::= [ ]?\n");
  EXPECT_EQ(prefix_gbnf_rules(R"(x ::= "\"y" [\]z])", "q"), R"(qx ::= "\"y" [\]z])");
}

}  // namespace
}  // namespace tessera::server::testing
