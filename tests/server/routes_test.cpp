// Non-streaming routes against the fake engine: chat and completions bodies, n, prompt forms,
// stop, logprobs, models, health, ready, metrics, tokenize/detokenize, keep-alive.
#include <gtest/gtest.h>

#include <random>

#include "test_fixture.h"

namespace tessera::server::testing {
namespace {

using json = nlohmann::json;

TEST(HttpRoutes, ChatCompletion) {
  Served s;
  const auto r = post(s.port(), "/v1/chat/completions", chat_body("Hi", 7));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  const json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "fake-model");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_GT(j["created"].get<int64_t>(), 1600000000);
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], s.engine.expected_text(7));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  // The prompt went through the chat template, without extra special tokens.
  const auto sub = s.engine.submitted();
  ASSERT_EQ(sub.size(), 1u);
  const auto& tok = s.engine.tokenizer();
  EXPECT_EQ(tok.decode(sub[0].prompt_ids),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(sub[0].request_id, j["id"]);
  EXPECT_EQ(sub[0].stopping.max_tokens, 7);
  EXPECT_FLOAT_EQ(sub[0].sampling.temperature, 1.0f);  // OpenAI's default
  EXPECT_EQ(j["usage"]["prompt_tokens"], sub[0].prompt_ids.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 7);
  EXPECT_EQ(j["usage"]["total_tokens"], sub[0].prompt_ids.size() + 7);
}

TEST(HttpRoutes, ChatParametersReachTheEngine) {
  Served s;
  json b = chat_body("Hi", 3);
  b["messages"] = {
      {{"role", "system"}, {"content", "S"}},
      {{"role", "user"},
       {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}};
  b.erase("max_tokens");
  b["max_completion_tokens"] = 4;
  b["temperature"] = 0.5;
  b["top_p"] = 0.9;
  b["top_k"] = 5;
  b["min_p"] = 0.1;
  b["seed"] = 42;
  b["presence_penalty"] = 0.5;
  b["frequency_penalty"] = -0.5;
  b["repetition_penalty"] = 1.2;
  b["logit_bias"] = {{"104", 5}, {"105", -100}};
  b["stop"] = "zzz";
  b["ignore_eos"] = true;
  b["user"] = "u1";
  const auto r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto req = s.engine.submitted().at(0);
  EXPECT_EQ(s.engine.tokenizer().decode(req.prompt_ids),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(req.stopping.max_tokens, 4);
  EXPECT_FLOAT_EQ(req.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(req.sampling.top_p, 0.9f);
  EXPECT_EQ(req.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(req.sampling.min_p, 0.1f);
  EXPECT_EQ(req.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(req.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(req.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(req.sampling.repetition_penalty, 1.2f);
  ASSERT_EQ(req.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(req.sampling.logit_bias[0], (std::pair<int32_t, float>{104, 5.0f}));
  EXPECT_EQ(req.sampling.logit_bias[1], (std::pair<int32_t, float>{105, -100.0f}));
  EXPECT_EQ(req.stopping.stop, std::vector<std::string>{"zzz"});
  EXPECT_TRUE(req.stopping.ignore_eos);
}

TEST(HttpRoutes, DefaultMaxTokensFillsTheContext) {
  Served s({.max_model_len = 40});
  const auto r = post(s.port(), "/v1/completions", {{"prompt", "hello"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(s.engine.submitted().at(0).stopping.max_tokens, 39);  // "hello" is one token
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "length");
}

TEST(HttpRoutes, CompletionsPromptListsAndN) {
  Served s;
  const auto r =
      post(s.port(), "/v1/completions",
           {{"prompt", {"hello", "hello world"}}, {"n", 2}, {"max_tokens", 3}, {"seed", 7}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  EXPECT_EQ(j["object"], "text_completion");
  ASSERT_EQ(j["choices"].size(), 4u);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(j["choices"][k]["index"], k);
    EXPECT_EQ(j["choices"][k]["text"], s.engine.expected_text(3));
    EXPECT_EQ(j["choices"][k]["finish_reason"], "length");
  }
  auto sub = s.engine.submitted();
  ASSERT_EQ(sub.size(), 4u);
  std::sort(sub.begin(), sub.end(), [](auto& a, auto& b) { return a.request_id < b.request_id; });
  const std::string id = j["id"];
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(sub[k].request_id, id + "-" + std::to_string(k));
    EXPECT_EQ(sub[k].sampling.seed, 7u + k);  // distinct yet reproducible choices
  }
  EXPECT_EQ(sub[0].prompt_ids.size(), 1u);  // "hello"
  EXPECT_EQ(sub[2].prompt_ids.size(), 5u);  // "hello", " wo", "r", "l", "d"
  // Prompt tokens count once per prompt, completions once per choice.
  EXPECT_EQ(j["usage"]["prompt_tokens"], sub[0].prompt_ids.size() + sub[2].prompt_ids.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
}

TEST(HttpRoutes, CompletionsTokenIdPrompts) {
  Served s;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> id(0, s.engine.tokenizer().vocab_size() - 1);
  std::vector<int> a(5), b(3);
  for (auto& x : a) x = id(rng);
  for (auto& x : b) x = id(rng);
  auto r = post(s.port(), "/v1/completions", {{"prompt", a}, {"max_tokens", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  r = post(s.port(), "/v1/completions", {{"prompt", {a, b}}, {"max_tokens", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"].size(), 2u);
  auto sub = s.engine.submitted();
  ASSERT_EQ(sub.size(), 3u);
  EXPECT_EQ(sub[0].prompt_ids, std::vector<int32_t>(a.begin(), a.end()));
  std::vector<std::vector<int32_t>> got{sub[1].prompt_ids, sub[2].prompt_ids};
  std::sort(got.begin(), got.end(), [](auto& x, auto& y) { return x.size() > y.size(); });
  EXPECT_EQ(got[0], std::vector<int32_t>(a.begin(), a.end()));
  EXPECT_EQ(got[1], std::vector<int32_t>(b.begin(), b.end()));
}

TEST(HttpRoutes, StopString) {
  Served s;
  auto r = post(s.port(), "/v1/completions",
                {{"prompt", "x"}, {"max_tokens", 20}, {"stop", {" wo", "qq"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["text"], "hello");
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(s.engine.submitted().at(0).stopping.stop, (std::vector<std::string>{" wo", "qq"}));
}

TEST(HttpRoutes, Logprobs) {
  Served s;
  auto r = post(s.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 3}, {"logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json lp = r.json()["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"hello", " wo", "r"}));
  EXPECT_EQ(lp["token_logprobs"], json({-0.25, -0.25, -0.25}));
  EXPECT_EQ(lp["text_offset"], json({0, 5, 8}));
  ASSERT_EQ(lp["top_logprobs"].size(), 3u);
  EXPECT_EQ(lp["top_logprobs"][0], json({{"hello", -0.25}, {" wo", -1.25}}));
  EXPECT_EQ(s.engine.submitted().at(0).sampling.top_logprobs, 2);

  json b = chat_body("Hi", 2);
  b["logprobs"] = true;
  b["top_logprobs"] = 1;
  r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  const json content = r.json()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[1]["token"], " wo");
  EXPECT_EQ(content[1]["logprob"], -0.25);
  EXPECT_EQ(content[1]["bytes"], json({32, 119, 111}));
  EXPECT_EQ(content[1]["top_logprobs"],
            json::array(
                {{{"token", "hello"}, {"logprob", -0.25}, {"bytes", {104, 101, 108, 108, 111}}}}));
}

TEST(HttpRoutes, ModelsHealthReadyMetrics) {
  Served s({}, {.served_model_name = "my-name"});
  auto r = get(s.port(), "/v1/models");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["object"], "list");
  EXPECT_EQ(r.json()["data"][0]["id"], "my-name");
  EXPECT_EQ(r.json()["data"][0]["object"], "model");
  EXPECT_EQ(r.json()["data"][0]["max_model_len"], 512);
  EXPECT_EQ(get(s.port(), "/health").status, 200);
  EXPECT_EQ(get(s.port(), "/ready").status, 200);
  s.engine.ready_ = false;
  s.engine.healthy_ = false;
  EXPECT_EQ(get(s.port(), "/ready").status, 503);
  EXPECT_EQ(get(s.port(), "/health").status, 503);
  EXPECT_EQ(get(s.port(), "/ready").json()["error"]["type"], "service_unavailable_error");
  r = get(s.port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type").rfind("text/plain; version=0.0.4", 0), 0u);
  EXPECT_NE(r.body.find("tessera_fake_engine_steps_total"), std::string::npos);
  EXPECT_NE(r.body.find("tessera_http_requests_total{route=\"/ready\",status=\"503\"} 2"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("tessera_http_requests_total{route=\"/v1/models\",status=\"200\"} 1"),
            std::string::npos);
  EXPECT_NE(r.body.find("tessera_http_request_duration_seconds_bucket"), std::string::npos);
}

TEST(HttpRoutes, TokenizeDetokenizeRoundTripRandomText) {
  Served s;
  std::mt19937 rng(std::random_device{}());
  const char* words[] = {"hello", " world", " hell", "help", "\xC3\xA9", " ", "\n", "x"};
  std::uniform_int_distribution<int> pick(0, 7);
  for (int i = 0; i < 10; ++i) {
    std::string text;
    for (int k = 0; k < 12; ++k) text += words[pick(rng)];
    auto r = post(s.port(), "/tokenize", {{"prompt", text}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.json();
    EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), s.engine.tokenizer().encode(text));
    EXPECT_EQ(j["count"], j["tokens"].size());
    EXPECT_EQ(j["max_model_len"], 512);
    r = post(s.port(), "/detokenize", {{"tokens", j["tokens"]}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["prompt"], text);
  }
  auto r = post(s.port(), "/tokenize", {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(s.engine.tokenizer().decode(r.json()["tokens"].get<std::vector<int32_t>>()),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(post(s.port(), "/detokenize", {{"tokens", {1, 99999}}}).status, 400);
}

TEST(HttpRoutes, KeepAliveServesSeveralRequestsOnOneConnection) {
  Served s;
  Client c(s.port());
  for (int i = 0; i < 3; ++i) {
    auto r = c.request(http::verb::post, "/v1/completions",
                       json{{"prompt", "a"}, {"max_tokens", 2 + i}}.dump());
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.json()["choices"][0]["text"], s.engine.expected_text(2 + i));
    EXPECT_EQ(c.request(http::verb::get, "/health").status, 200);
  }
}

TEST(HttpRoutes, ExpectContinueAndPipelining) {
  Served s;
  Client c(s.port());
  const std::string body = json{{"prompt", "a"}, {"max_tokens", 2}}.dump();
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nExpect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  net::write(c.socket(), net::buffer(head));
  std::string got(25, '\0');
  net::read(c.socket(), net::buffer(got));
  EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  // The body, and right behind it a second request on the same connection.
  const std::string second = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  net::write(c.socket(), net::buffer(body + second));
  auto r = c.read();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["text"], s.engine.expected_text(2));
  r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["status"], "ok");
}

TEST(HttpRoutes, StartFailsOnABusyPortNamingIt) {
  Served s;
  FakeEngine other;
  HttpServer second(other, {.port = s.port()});
  try {
    second.start();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(s.port())),
              std::string::npos)
        << e.what();
  }
}

TEST(HttpRoutes, StopAcceptingKeepsOpenConnections) {
  Served s;
  Client open(s.port());
  EXPECT_EQ(open.request(http::verb::get, "/health").status, 200);
  s.server->stop_accepting();
  EXPECT_THROW(Client late(s.port()), boost::system::system_error);
  EXPECT_EQ(open.request(http::verb::get, "/health").status, 200);
  s.server->stop();
}

}  // namespace
}  // namespace tessera::server::testing
