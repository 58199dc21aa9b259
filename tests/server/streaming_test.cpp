// Streaming: OpenAI's chunk sequence and [DONE], include_usage, n=2, errors in-band, a client
// who leaves mid-stream (engine.abort), a client who stops reading (bounded buffer), and 200
// concurrent streams on 2 io threads.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "test_fixture.h"

namespace tessera::server::testing {
namespace {

using json = nlohmann::json;

std::vector<json> chunks_of(const HttpResult& r) {
  std::vector<json> out;
  const auto data = sse_data(r.body);
  EXPECT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]");
  for (size_t i = 0; i + 1 < data.size(); ++i) out.push_back(json::parse(data[i]));
  return out;
}

TEST(HttpStreaming, ChatChunkSequence) {
  Served s;
  json b = chat_body("Hi", 6);
  b["stream"] = true;
  const auto r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type").rfind("text/event-stream", 0), 0u);
  EXPECT_EQ(r.headers.at("transfer-encoding"), "chunked");
  const auto chunks = chunks_of(r);
  ASSERT_EQ(chunks.size(), 1u + 6u + 1u);  // role, one per token, finish
  const std::string id = chunks[0]["id"];
  EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
  std::string text;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const json& c = chunks[i];
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["model"], "fake-model");
    EXPECT_FALSE(c.contains("usage"));
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& ch = c["choices"][0];
    EXPECT_EQ(ch["index"], 0);
    if (i == 0) {
      EXPECT_EQ(ch["delta"], json({{"role", "assistant"}, {"content", ""}}));
    } else if (i + 1 < chunks.size()) {
      EXPECT_TRUE(ch["finish_reason"].is_null());
      EXPECT_FALSE(ch["delta"].contains("role"));
      text += ch["delta"]["content"].get<std::string>();
    } else {
      EXPECT_EQ(ch["delta"], json::object());
      EXPECT_EQ(ch["finish_reason"], "length");
    }
  }
  EXPECT_EQ(text, s.engine.expected_text(6));
}

TEST(HttpStreaming, IncludeUsageAndN2Completions) {
  Served s;
  const auto r = post(s.port(), "/v1/completions",
                      {{"prompt", "hello"},
                       {"max_tokens", 4},
                       {"n", 2},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto chunks = chunks_of(r);
  ASSERT_GE(chunks.size(), 2u);
  std::map<int, std::string> text;
  std::map<int, std::string> finish;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    const json& c = chunks[i];
    EXPECT_EQ(c["object"], "text_completion");
    ASSERT_TRUE(c.contains("usage"));
    EXPECT_TRUE(c["usage"].is_null());
    const json& ch = c["choices"][0];
    const int idx = ch["index"];
    text[idx] += ch["text"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish[idx] = ch["finish_reason"];
  }
  EXPECT_EQ(text[0], s.engine.expected_text(4));
  EXPECT_EQ(text[1], s.engine.expected_text(4));
  EXPECT_EQ(finish, (std::map<int, std::string>{{0, "length"}, {1, "length"}}));
  const json& last = chunks.back();
  EXPECT_EQ(last["choices"], json::array());
  EXPECT_EQ(last["usage"],
            json({{"prompt_tokens", 1},
                  {"completion_tokens", 8},
                  {"total_tokens", 9},
                  {"prompt_tokens_details", {{"cached_tokens", 0}}}}));
}

TEST(HttpStreaming, ChatN2OpensEveryChoiceWithItsRole) {
  Served s;
  json b = chat_body("Hi", 3);
  b["stream"] = true;
  b["n"] = 2;
  const auto chunks = chunks_of(post(s.port(), "/v1/chat/completions", b));
  ASSERT_GE(chunks.size(), 2u);
  std::set<int> roles;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(chunks[size_t(i)]["choices"][0]["delta"]["role"], "assistant");
    roles.insert(chunks[size_t(i)]["choices"][0]["index"].get<int>());
  }
  EXPECT_EQ(roles, (std::set<int>{0, 1}));
  EXPECT_EQ(chunks.size(), 2u + 2u * 3u + 2u);
}

TEST(HttpStreaming, StreamedLogprobs) {
  Served s;
  json b = chat_body("Hi", 2);
  b["stream"] = true;
  b["logprobs"] = true;
  const auto chunks = chunks_of(post(s.port(), "/v1/chat/completions", b));
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[1]["choices"][0]["logprobs"]["content"][0]["token"], "hello");
  EXPECT_EQ(chunks[2]["choices"][0]["logprobs"]["content"][0]["token"], " wo");
}

TEST(HttpStreaming, EngineErrorBecomesAnErrorEvent) {
  Served s({.error_after = 2});
  json b = chat_body("Hi", 10);
  b["stream"] = true;
  const auto r = post(s.port(), "/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200);
  const auto data = sse_data(r.body);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.back(), "[DONE]");
  const json err = json::parse(data[data.size() - 2]);
  EXPECT_EQ(err["error"]["type"], "server_error");
  EXPECT_NE(err["error"]["message"].get<std::string>().find("fake failure"), std::string::npos);
  // Non-streaming: a 500 with the error object.
  const auto r2 = post(s.port(), "/v1/chat/completions", chat_body("Hi", 10));
  EXPECT_EQ(r2.status, 500);
  EXPECT_NE(r2.json()["error"]["message"].get<std::string>().find("fake failure"),
            std::string::npos);
}

TEST(HttpStreaming, DisconnectMidStreamAbortsTheRequest) {
  Served s({.step_ms = 5});
  {
    Client c(s.port());
    json b = chat_body("Hi", 400);
    b["stream"] = true;
    c.send(http::verb::post, "/v1/chat/completions", b.dump());
    char buf[512];
    const size_t n = c.socket().read_some(net::buffer(buf));  // the head and first events
    ASSERT_GT(n, 0u);
    ASSERT_TRUE(s.engine.wait_for([](size_t sub, size_t) { return sub == 1; }));
  }  // the client goes away
  ASSERT_TRUE(s.engine.wait_for([](size_t, size_t ab) { return ab >= 1; }));
  EXPECT_EQ(s.engine.aborted().at(0), s.engine.submitted().at(0).request_id);
}

TEST(HttpStreaming, DisconnectWhileWaitingForAFullResponseAbortsToo) {
  Served s({.hold = true});
  {
    Client c(s.port());
    c.send(http::verb::post, "/v1/completions",
           json{{"prompt", "a"}, {"max_tokens", 5}, {"n", 2}}.dump());
    ASSERT_TRUE(s.engine.wait_for([](size_t sub, size_t) { return sub == 2; }));
  }
  ASSERT_TRUE(s.engine.wait_for([](size_t, size_t ab) { return ab == 2; }));
  std::set<std::string> ab, sub;
  for (auto& id : s.engine.aborted()) ab.insert(id);
  for (auto& r : s.engine.submitted()) sub.insert(r.request_id);
  EXPECT_EQ(ab, sub);
}

TEST(HttpStreaming, ClientThatStopsReadingIsCutOffAtTheBufferBound) {
  // ~4 MB/s per stream: the socket buffers of a stalled client fill within a second or two.
  Served s({.step_ms = 1, .max_model_len = 1 << 28, .tokens_per_step = 2000},
           {.stream_buffer_bytes = 64 << 10});
  const json body = {{"prompt", "a"}, {"max_tokens", (1 << 28) - 8}, {"stream", true}};
  // A reader at the same pace keeps its stream: the bound is about clients falling behind.
  Client reader(s.port());
  reader.send(http::verb::post, "/v1/completions", body.dump());
  ASSERT_TRUE(s.engine.wait_for([](size_t sub, size_t) { return sub == 1; }));
  const std::string reader_id = s.engine.submitted().at(0).request_id;
  // The stalled client: a small receive window so the socket buffers fill quickly.
  net::io_context ioc;
  tcp::socket stalled(ioc);
  stalled.open(tcp::v4());
  stalled.set_option(net::socket_base::receive_buffer_size(4096));
  stalled.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(s.port())));
  http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
  req.set(http::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  http::write(stalled, req);
  ASSERT_TRUE(s.engine.wait_for([](size_t sub, size_t) { return sub == 2; }));
  const std::string stalled_id = s.engine.submitted().at(1).request_id;
  std::atomic<bool> done{false};
  std::thread drain([&] {  // keep reading the good stream meanwhile
    char buf[4096];
    beast::error_code ec;
    while (!done && !ec) reader.socket().read_some(net::buffer(buf), ec);
  });
  const bool cut = s.engine.wait_for([](size_t, size_t ab) { return ab >= 1; }, 90000);
  done = true;
  s.engine.abort(reader_id);  // ends the good stream so the drain thread returns
  drain.join();
  ASSERT_TRUE(cut);
  EXPECT_EQ(s.engine.aborted().at(0), stalled_id);
}

TEST(HttpStreaming, TwoHundredConcurrentStreamsOnTwoIoThreads) {
  constexpr int kClients = 200;
  Served s({.step_ms = 2, .hold = true}, {.threads = 2});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(s.port()));
    json b = chat_body("Hi " + std::to_string(i), 8);
    b["stream"] = true;
    clients.back()->send(http::verb::post, "/v1/chat/completions", b.dump());
  }
  // Every stream is open and queued in the engine at once before any token flows.
  ASSERT_TRUE(s.engine.wait_for([](size_t sub, size_t) { return sub == kClients; }, 30000))
      << s.engine.submitted().size();
  EXPECT_EQ(s.engine.running(), size_t(kClients));
  s.engine.release();
  const std::string want = s.engine.expected_text(8);
  for (auto& c : clients) {
    const auto r = c->read();
    ASSERT_EQ(r.status, 200);
    const auto chunks = chunks_of(r);
    std::string text;
    for (size_t i = 1; i + 1 < chunks.size(); ++i) {
      text += chunks[i]["choices"][0]["delta"]["content"].get<std::string>();
    }
    EXPECT_EQ(text, want);
    EXPECT_EQ(chunks.back()["choices"][0]["finish_reason"], "length");
  }
  EXPECT_TRUE(s.engine.aborted().empty());
}

}  // namespace
}  // namespace tessera::server::testing
