// Error statuses and OpenAI error objects: 400 (bad JSON, types, ranges, content parts, context),
// 401, 404, 405, 413, 429 + Retry-After, 500, 503; plus direct parser checks on random values.
#include <gtest/gtest.h>

#include <random>

#include "tessera/server/api_error.h"
#include "tessera/server/openai_request.h"
#include "test_fixture.h"

namespace tessera::server::testing {
namespace {

using json = nlohmann::json;

void expect_error(const HttpResult& r, int status, const char* type, const json& param) {
  EXPECT_EQ(r.status, status) << r.body;
  ASSERT_TRUE(json::accept(r.body)) << r.body;
  const json j = r.json();
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["type"], type) << r.body;
  EXPECT_EQ(j["error"]["param"], param) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  EXPECT_TRUE(j["error"].contains("code"));
}

TEST(HttpErrors, BadRequests) {
  Served s;
  const int p = s.port();
  expect_error(post_raw(p, "/v1/chat/completions", "{not json"), 400, "invalid_request_error",
               nullptr);
  expect_error(post_raw(p, "/v1/completions", "[1,2]"), 400, "invalid_request_error", nullptr);
  auto with = [](json b, const char* k, json v) {
    b[k] = std::move(v);
    return b;
  };
  const json chat = chat_body("Hi", 4);
  const json cmpl = {{"prompt", "hi"}, {"max_tokens", 4}};
  struct Case {
    const char* route;
    json body;
    const char* param;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", with(chat, "temperature", "hot"), "temperature"},
      {"/v1/chat/completions", with(chat, "temperature", 2.5), "temperature"},
      {"/v1/chat/completions", with(chat, "top_p", 0), "top_p"},
      {"/v1/chat/completions", with(chat, "top_k", 1.5), "top_k"},
      {"/v1/chat/completions", with(chat, "n", 9), "n"},
      {"/v1/chat/completions", with(chat, "n", 0), "n"},
      {"/v1/chat/completions", with(chat, "max_tokens", 0), "max_tokens"},
      {"/v1/chat/completions", with(chat, "max_tokens", 510), "max_tokens"},  // + prompt > 512
      {"/v1/chat/completions", with(chat, "presence_penalty", 3), "presence_penalty"},
      {"/v1/chat/completions", with(chat, "stop", json::array({1})), "stop"},
      {"/v1/chat/completions", with(chat, "stop", json(std::vector<std::string>(9, "x"))), "stop"},
      {"/v1/chat/completions", with(chat, "logit_bias", {{"abc", 1}}), "logit_bias"},
      {"/v1/chat/completions", with(chat, "logit_bias", {{"999999", 1}}), "logit_bias"},
      {"/v1/chat/completions", with(chat, "logit_bias", {{"5", 101}}), "logit_bias"},
      {"/v1/chat/completions", with(chat, "top_logprobs", 3), "top_logprobs"},  // no logprobs
      {"/v1/chat/completions", with(chat, "stream", "yes"), "stream"},
      {"/v1/chat/completions", with(chat, "stream_options", {{"include_usage", true}}),
       "stream_options"},
      {"/v1/chat/completions", with(chat, "messages", json::array()), "messages"},
      {"/v1/chat/completions", with(chat, "messages", {{{"role", "robot"}, {"content", "x"}}}),
       "messages"},
      {"/v1/chat/completions",
       with(chat, "messages",
            {{{"role", "user"},
              {"content", {{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}}),
       "messages"},
      {"/v1/completions", with(cmpl, "prompt", 5), "prompt"},
      {"/v1/completions", with(cmpl, "prompt", json::array()), "prompt"},
      {"/v1/completions", with(cmpl, "prompt", {1, 100000}), "prompt"},
      {"/v1/completions", with(cmpl, "prompt", ""), "prompt"},
      {"/v1/completions", with(cmpl, "prompt", std::string(600, 'x')), "prompt"},
      {"/v1/completions", with(cmpl, "logprobs", 21), "logprobs"},
      {"/v1/completions", with(cmpl, "logprobs", true), "logprobs"},
      {"/v1/completions", json{{"max_tokens", 3}}, "prompt"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.dump());
    expect_error(post(p, c.route, c.body), 400, "invalid_request_error", c.param);
  }
  EXPECT_TRUE(s.engine.submitted().empty());
}

TEST(HttpErrors, UnknownModelRouteAndMethod) {
  Served s;
  json b = chat_body("Hi", 3);
  b["model"] = "gpt-4";
  auto r = post(s.port(), "/v1/chat/completions", b);
  expect_error(r, 404, "not_found_error", "model");
  EXPECT_EQ(r.json()["error"]["code"], "model_not_found");
  expect_error(get(s.port(), "/v2/nothing"), 404, "not_found_error", nullptr);
  r = get(s.port(), "/v1/chat/completions");
  expect_error(r, 405, "invalid_request_error", nullptr);
  EXPECT_EQ(r.headers.at("allow"), "POST");
  expect_error(post(s.port(), "/health", json::object()), 405, "invalid_request_error", nullptr);
  b.erase("model");  // omitted: the served model
  EXPECT_EQ(post(s.port(), "/v1/chat/completions", b).status, 200);
}

TEST(HttpErrors, BodyLimit) {
  Served s({}, {.max_body_bytes = 1000});
  json b = chat_body(std::string(2000, 'x'), 3);
  expect_error(post(s.port(), "/v1/chat/completions", b), 413, "invalid_request_error", nullptr);
  EXPECT_EQ(post(s.port(), "/v1/chat/completions", chat_body("short", 3)).status, 200);
}

TEST(HttpErrors, QueueFullIs429WithRetryAfter) {
  Served s({.submit_error = ErrorCode::kResourceExhausted});
  const auto r = post(s.port(), "/v1/chat/completions", chat_body("Hi", 3));
  expect_error(r, 429, "rate_limit_error", nullptr);
  EXPECT_EQ(r.headers.at("retry-after"), "1");
}

TEST(HttpErrors, EngineRefusalsMapToStatuses) {
  {
    Served s({.submit_error = ErrorCode::kInvalidArgument});
    expect_error(post(s.port(), "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}}), 400,
                 "invalid_request_error", nullptr);
  }
  {
    Served s({.submit_error = ErrorCode::kInternal});
    expect_error(post(s.port(), "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}}), 500,
                 "server_error", nullptr);
  }
}

TEST(HttpErrors, NotReadyIs503) {
  Served s;
  s.engine.ready_ = false;
  expect_error(post(s.port(), "/v1/chat/completions", chat_body("Hi", 3)), 503,
               "service_unavailable_error", nullptr);
  EXPECT_TRUE(s.engine.submitted().empty());
}

TEST(HttpErrors, ApiKey) {
  Served s({}, {.api_key = "sk-secret"});
  const auto body = chat_body("Hi", 2);
  auto r = post(s.port(), "/v1/chat/completions", body);
  expect_error(r, 401, "authentication_error", nullptr);
  EXPECT_EQ(r.json()["error"]["code"], "invalid_api_key");
  expect_error(
      post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer sk-secreT"}}), 401,
      "authentication_error", nullptr);
  expect_error(
      post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer sk-secret2"}}), 401,
      "authentication_error", nullptr);
  expect_error(get(s.port(), "/v1/models", {{"Authorization", "sk-secret"}}), 401,
               "authentication_error", nullptr);
  EXPECT_EQ(
      post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer sk-secret"}}).status,
      200);
  EXPECT_EQ(get(s.port(), "/v1/models", {{"authorization", "bearer sk-secret"}}).status, 200);
  EXPECT_EQ(get(s.port(), "/health").status, 200);  // probes need no key
  // /metrics reveals the model, the load and the request mix: it needs the key, unless the
  // operator opts out for a scraper that cannot send one.
  expect_error(get(s.port(), "/metrics"), 401, "authentication_error", nullptr);
  EXPECT_EQ(get(s.port(), "/metrics", {{"Authorization", "Bearer sk-secret"}}).status, 200);
  Served open({}, {.api_key = "sk-secret", .metrics_without_api_key = true});
  EXPECT_EQ(get(open.port(), "/metrics").status, 200);
  expect_error(get(open.port(), "/v1/models"), 401, "authentication_error", nullptr);
}

TEST(OpenAiRequest, RandomNumericParametersAcceptedExactlyInRange) {
  const auto tok = make_test_tokenizer();
  const ParseContext ctx{.tok = tok,
                         .model = {.id = "m",
                                   .max_model_len = 128,
                                   .vocab_size = tok.vocab_size(),
                                   .num_blocks = 64,
                                   .block_size = 16}};
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> x(-4.0, 4.0);
  struct Range {
    const char* key;
    double lo, hi;
    bool lo_open;
  };
  const Range ranges[] = {{"temperature", 0, 2, false},
                          {"top_p", 0, 1, true},
                          {"min_p", 0, 1, false},
                          {"presence_penalty", -2, 2, false},
                          {"frequency_penalty", -2, 2, false},
                          {"repetition_penalty", 0, 10, true}};
  for (int i = 0; i < 300; ++i) {
    const Range& r = ranges[size_t(i) % std::size(ranges)];
    const double v = x(rng);
    const nlohmann::ordered_json body = {{"prompt", "hello"}, {"max_tokens", 4}, {r.key, v}};
    const bool ok = (r.lo_open ? v > r.lo : v >= r.lo) && v <= r.hi;
    try {
      const ParsedGeneration g = parse_completion_request(body, ctx);
      EXPECT_TRUE(ok) << r.key << "=" << v;
    } catch (const ApiError& e) {
      EXPECT_FALSE(ok) << r.key << "=" << v << ": " << e.what();
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), r.key);
    }
  }
}

}  // namespace
}  // namespace tessera::server::testing
