// Tool calling through the HTTP server with a scripted model whose chat template writes Hermes
// calls: the non-streaming message (content outside the call, tool_calls, finish_reason
// "tool_calls"), the streamed deltas in OpenAI's shape, text held back only while it may open a
// call, tool_choice "none", parallel_tool_calls false, and a conversation with tool results.
#include <gtest/gtest.h>

#include "test_fixture.h"

namespace tessera::server::testing {
namespace {

using json = nlohmann::json;

// Names the Hermes markers, so the format is detected; renders tools, calls and results.
const char* kToolTemplate =
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}"
    "</tools> answer with <tool_call>{...}</tool_call><|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{\"name\": \"{{ c.function.name }}"
    "\", \"arguments\": {{ c.function.arguments | tojson }}}</tool_call>{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const std::string kCall =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

FakeEngineOptions scripted(const std::string& script) {
  FakeEngineOptions o;
  o.script = script;
  o.chat_template = kToolTemplate;
  o.eos_after = int(make_test_tokenizer(kToolTemplate)
                        .encode(script, {.add_special = false, .parse_special = false})
                        .size());
  return o;
}

json tool_body(bool stream) {
  json b = chat_body("Weather in Paris?", 250);
  b["tools"] = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
  if (stream) b["stream"] = true;
  return b;
}

TEST(HttpToolCalls, MessageCarriesTheParsedCall) {
  Served s(scripted("Let me look. " + kCall));
  const auto r = post(s.port(), "/v1/chat/completions", tool_body(false));
  ASSERT_EQ(r.status, 200) << r.body;
  const json c = json::parse(r.body)["choices"][0];
  EXPECT_EQ(c["finish_reason"], "tool_calls");
  EXPECT_EQ(c["message"]["content"], "Let me look. ");
  ASSERT_EQ(c["message"]["tool_calls"].size(), 1u);
  const json& call = c["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()),
            json({{"city", "Paris"}}));
}

TEST(HttpToolCalls, OnlyACallMeansNullContent) {
  Served s(scripted(kCall));
  const auto r = post(s.port(), "/v1/chat/completions", tool_body(false));
  ASSERT_EQ(r.status, 200) << r.body;
  const json c = json::parse(r.body)["choices"][0];
  EXPECT_TRUE(c["message"]["content"].is_null());
  EXPECT_EQ(c["message"]["tool_calls"].size(), 1u);
}

TEST(HttpToolCalls, StreamedDeltas) {
  Served s(scripted("Hi <tool " + kCall));
  const auto r = post(s.port(), "/v1/chat/completions", tool_body(true));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto data = sse_data(r.body);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]");
  std::string content, args;
  std::vector<json> heads;
  json last_finish;
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const json ch = json::parse(data[i])["choices"][0];
    const json& d = ch["delta"];
    if (d.contains("content")) {
      const std::string piece = d["content"];
      // Nothing of the call's markup leaks into content while it streams.
      EXPECT_EQ(piece.find("<tool_c"), std::string::npos) << piece;
      content += piece;
    }
    if (d.contains("tool_calls")) {
      for (const json& t : d["tool_calls"]) {
        EXPECT_EQ(t["index"], 0);
        if (t.contains("id")) heads.push_back(t);
        args += t["function"]["arguments"].get<std::string>();
      }
    }
    if (!ch["finish_reason"].is_null()) {
      EXPECT_EQ(i + 2, data.size()) << "finish_reason before the last chunk";
      last_finish = ch["finish_reason"];
    }
  }
  EXPECT_EQ(content, "Hi <tool ");  // "<tool " was held until it could not open a call
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0]["type"], "function");
  EXPECT_EQ(heads[0]["function"]["name"], "get_weather");
  EXPECT_EQ(heads[0]["function"]["arguments"], "");
  EXPECT_EQ(heads[0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(json::parse(args), json({{"city", "Paris"}}));
  EXPECT_EQ(last_finish, "tool_calls");
}

TEST(HttpToolCalls, ChoiceNoneDoesNotParse) {
  Served s(scripted("A " + kCall));
  json b = tool_body(false);
  b["tool_choice"] = "none";
  const auto r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  const json c = json::parse(r.body)["choices"][0];
  EXPECT_EQ(c["finish_reason"], "stop");
  EXPECT_EQ(c["message"]["content"], "A " + kCall);
  EXPECT_FALSE(c["message"].contains("tool_calls"));
  // And the template was not offered the tools.
  const auto prompt = s.engine.submitted().back().prompt_ids;
  const std::string text = s.engine.tokenizer().decode(prompt);
  EXPECT_EQ(text.find("<tools>"), std::string::npos) << text;
}

TEST(HttpToolCalls, ParallelFalseKeepsTheFirstCall) {
  Served s(scripted(kCall + "\n" + kCall));
  json b = tool_body(false);
  const auto two = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(two.status, 200) << two.body;
  EXPECT_EQ(json::parse(two.body)["choices"][0]["message"]["tool_calls"].size(), 2u);
  b["parallel_tool_calls"] = false;
  const auto one = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(json::parse(one.body)["choices"][0]["message"]["tool_calls"].size(), 1u);
}

TEST(HttpToolCalls, ToolResultsGoThroughTheTemplate) {
  Served s(scripted("It is sunny."));
  json b = tool_body(false);
  b["max_tokens"] = 32;
  b["messages"] = json::array(
      {{{"role", "user"}, {"content", "Weather in Paris?"}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         json::array(
             {{{"id", "call_1"},
               {"type", "function"},
               {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}}})}},
       {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny, 21 C"}}});
  const auto r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  const json c = json::parse(r.body)["choices"][0];
  EXPECT_EQ(c["message"]["content"], "It is sunny.");
  EXPECT_EQ(c["finish_reason"], "stop");
  const std::string text = s.engine.tokenizer().decode(s.engine.submitted().back().prompt_ids);
  // The arguments string reached the template as a mapping (tojson of an object, not a string).
  EXPECT_NE(
      text.find("<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("sunny, 21 C"), std::string::npos) << text;
}

TEST(HttpToolCalls, ToolsOnATemplateWithoutAFormatAreRefused) {
  Served s;  // the plain ChatML template
  const auto r = post(s.port(), "/v1/chat/completions", tool_body(false));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "tools");
  json b = tool_body(false);
  b["tool_choice"] = "none";
  EXPECT_EQ(post(s.port(), "/v1/chat/completions", b).status, 200);
}

}  // namespace
}  // namespace tessera::server::testing
