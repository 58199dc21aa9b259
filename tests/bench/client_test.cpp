// The bench client against a local streaming server with known gaps: the measured TTFT, ITL,
// TPOT, E2E and token counts, and failures (HTTP errors, error events, stalls, dropped streams)
// recorded by kind while the run still ends within its bounds. Tolerances allow for scheduling
// jitter on a loaded machine; nothing here asserts how fast our own code is.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "fake_server.h"
#include "tessera/bench/arrivals.h"
#include "tessera/bench/runner.h"
#include "tessera/core/error.h"

namespace tessera::bench {
namespace {

using testing::Behavior;
using testing::FakeServer;
using Clock = std::chrono::steady_clock;

constexpr double kTol = 30.0;  // ms of scheduling jitter allowed on a gap

RunConfig config_for(const FakeServer& s, size_t n, int concurrency = 1,
                     Endpoint ep = Endpoint::kChat) {
  RunConfig cfg;
  cfg.target = make_target(s.base_url(), ep, "m");
  for (size_t i = 0; i < std::max<size_t>(n, 1); ++i)
    cfg.requests.push_back(
        {.prompt = "hello " + std::to_string(i), .input_tokens = 3, .output_tokens = 16});
  cfg.num_requests = n;
  cfg.concurrency = concurrency;
  cfg.timeout_s = 10;
  return cfg;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

TEST(BenchClient, MeasuresKnownGaps) {
  FakeServer server(Behavior{.first_ms = 200, .gap_ms = 50, .tokens = 6});
  const auto res = run_benchmark(config_for(server, 1));
  ASSERT_EQ(res.records.size(), 1u);
  const auto& r = res.records[0];
  ASSERT_TRUE(r.success) << r.error_kind << ": " << r.error_message;
  ASSERT_TRUE(r.ttft_ms.has_value());
  EXPECT_GE(*r.ttft_ms, 199.0);
  EXPECT_LE(*r.ttft_ms, 200.0 + 5 * kTol);
  ASSERT_EQ(r.itl_ms.size(), 5u);
  EXPECT_NEAR(median(r.itl_ms), 50.0, kTol);
  // The gaps add up to the time between the first and the last token (250 ms by the schedule).
  const double span = std::accumulate(r.itl_ms.begin(), r.itl_ms.end(), 0.0);
  EXPECT_NEAR(span, 250.0, 2 * kTol);
  EXPECT_GE(r.e2e_ms, *r.ttft_ms + span - 1e-9);
  EXPECT_NEAR(r.e2e_ms, 450.0, 5 * kTol);
  EXPECT_EQ(r.output_tokens, 6);
  EXPECT_EQ(r.content_chunks, 6);
  EXPECT_EQ(r.input_tokens, 7);  // from usage, not the workload's 3
  EXPECT_TRUE(r.usage_reported);
  EXPECT_EQ(r.finish_reason, "length");
  ASSERT_TRUE(r.tpot_ms.has_value());
  EXPECT_NEAR(*r.tpot_ms, (r.e2e_ms - *r.ttft_ms) / 5.0, 1e-9);
  EXPECT_NEAR(*r.tpot_ms, 50.0, kTol);
  EXPECT_EQ(res.summary.completed, 1);
  EXPECT_EQ(res.summary.failed, 0);
}

TEST(BenchClient, TokenCountsFromUsageElseCounted) {
  // 12 tokens in 6 chunks (usage says 12), then a server without usage (6 counted).
  FakeServer with(Behavior{.first_ms = 20, .gap_ms = 20, .tokens = 6, .usage_completion = 12});
  auto r = run_benchmark(config_for(with, 1)).records.at(0);
  ASSERT_TRUE(r.success) << r.error_message;
  EXPECT_EQ(r.output_tokens, 12);
  EXPECT_TRUE(r.usage_reported);
  EXPECT_NEAR(*r.tpot_ms, (r.e2e_ms - *r.ttft_ms) / 11.0, 1e-9);

  FakeServer without(Behavior{.first_ms = 20, .gap_ms = 20, .tokens = 6, .usage = false});
  r = run_benchmark(config_for(without, 1)).records.at(0);
  ASSERT_TRUE(r.success) << r.error_message;
  EXPECT_EQ(r.output_tokens, 6);
  EXPECT_FALSE(r.usage_reported);
  EXPECT_EQ(r.input_tokens, 3);  // the workload's count
}

TEST(BenchClient, SendsOpenAiStreamingRequests) {
  FakeServer server(Behavior{.first_ms = 5, .gap_ms = 5, .tokens = 2});
  auto cfg = config_for(server, 1, 1, Endpoint::kCompletions);
  cfg.target.api_key = "sekrit";
  cfg.requests[0].system_prompt = "shared";
  const auto res = run_benchmark(cfg);
  ASSERT_TRUE(res.records.at(0).success) << res.records[0].error_message;
  EXPECT_EQ(res.records[0].output_tokens, 2);
  const auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].head.find("POST /v1/completions "), std::string::npos);
  EXPECT_NE(seen[0].head.find("Bearer sekrit"), std::string::npos);
  const auto body = nlohmann::json::parse(seen[0].body);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["prompt"], "shared\nhello 0");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["max_tokens"], 16);
  EXPECT_EQ(body["ignore_eos"], true);

  FakeServer chat(Behavior{.first_ms = 5, .gap_ms = 5, .tokens = 2});
  cfg = config_for(chat, 1);
  cfg.requests[0].system_prompt = "shared";
  cfg.target.ignore_eos = false;
  ASSERT_TRUE(run_benchmark(cfg).records.at(0).success);
  const auto cb = nlohmann::json::parse(chat.seen().at(0).body);
  EXPECT_NE(chat.seen()[0].head.find("POST /v1/chat/completions "), std::string::npos);
  EXPECT_EQ(cb["messages"][0]["role"], "system");
  EXPECT_EQ(cb["messages"][1]["content"], "hello 0");
  EXPECT_FALSE(cb.contains("ignore_eos"));
}

TEST(BenchClient, ClosedLoopKeepsConcurrencyAndSummaryAddsUp) {
  FakeServer server(Behavior{.first_ms = 30, .gap_ms = 10, .tokens = 4});
  const auto res = run_benchmark(config_for(server, 10, 4));
  ASSERT_EQ(res.records.size(), 10u);
  for (size_t i = 0; i < res.records.size(); ++i) {
    EXPECT_EQ(res.records[i].index, int64_t(i));
    EXPECT_TRUE(res.records[i].success) << res.records[i].error_message;
  }
  const auto& s = res.summary;
  EXPECT_EQ(s.completed, 10);
  EXPECT_EQ(s.total_output_tokens, 40);
  EXPECT_EQ(s.total_input_tokens, 70);
  EXPECT_NEAR(s.request_throughput * s.duration_s, 10.0, 1e-9);
  EXPECT_NEAR(s.output_token_throughput * s.duration_s, 40.0, 1e-9);
  EXPECT_NEAR(s.total_token_throughput * s.duration_s, 110.0, 1e-9);
  EXPECT_EQ(s.itl_ms.count, 30u);
  // At most 4 in flight: the 5th request starts no earlier than the first one ended.
  std::vector<double> ends;
  for (const auto& r : res.records) ends.push_back(r.start_s + r.e2e_ms / 1000);
  std::sort(ends.begin(), ends.end());
  std::vector<double> starts;
  for (const auto& r : res.records) starts.push_back(r.start_s);
  std::sort(starts.begin(), starts.end());
  EXPECT_GE(starts[4] + 1e-3, ends[0]);
}

TEST(BenchClient, PoissonArrivalsFollowTheSeededSchedule) {
  FakeServer server(Behavior{.first_ms = 5, .gap_ms = 5, .tokens = 2});
  auto cfg = config_for(server, 8, 0);
  cfg.request_rate = 40;
  cfg.seed = 1234;
  const auto res = run_benchmark(cfg);
  PoissonArrivals expected(40, 1234);
  ASSERT_EQ(res.records.size(), 8u);
  for (const auto& r : res.records) {
    EXPECT_TRUE(r.success) << r.error_message;
    EXPECT_DOUBLE_EQ(r.scheduled_s, expected.next());
    EXPECT_GE(r.start_s, r.scheduled_s - 1e-3);  // never sent early
  }
}

TEST(BenchClient, WarmupRequestsAreSentButNotCounted) {
  FakeServer server(Behavior{.first_ms = 5, .gap_ms = 5, .tokens = 2});
  auto cfg = config_for(server, 3);
  cfg.warmup_requests = {{.prompt = "w1", .output_tokens = 2},
                         {.prompt = "w2", .output_tokens = 2}};
  const auto res = run_benchmark(cfg);
  EXPECT_EQ(server.seen().size(), 5u);
  EXPECT_EQ(res.records.size(), 3u);
  EXPECT_EQ(res.summary.completed, 3);
}

TEST(BenchClient, HttpErrorsAndErrorEventsAreRecordedByKind) {
  // Requests 0,3,6 -> HTTP 500; 1,4 -> an error event in the stream; the rest succeed.
  FakeServer server([](int n) {
    if (n % 3 == 0) return Behavior{.kind = Behavior::kHttpError, .status = 500};
    if (n % 3 == 1 && n < 5)
      return Behavior{.kind = Behavior::kErrorEvent, .first_ms = 5, .tokens = 3};
    return Behavior{.first_ms = 5, .gap_ms = 5, .tokens = 3};
  });
  const auto res = run_benchmark(config_for(server, 8));
  ASSERT_EQ(res.records.size(), 8u);
  EXPECT_EQ(res.records[0].error_kind, "http_500");
  EXPECT_EQ(res.records[0].http_status, 500);
  EXPECT_EQ(res.records[0].error_message, "boom");
  EXPECT_EQ(res.records[1].error_kind, "stream_error");
  EXPECT_NE(res.records[1].error_message.find("engine died"), std::string::npos);
  EXPECT_TRUE(res.records[2].success);
  const auto& s = res.summary;
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 5);
  EXPECT_EQ(s.errors.at("http_500"), 3);
  EXPECT_EQ(s.errors.at("stream_error"), 2);
  EXPECT_EQ(s.total_output_tokens, 9);  // failed requests add no tokens
}

TEST(BenchClient, StalledServerTimesOutWithinTheBound) {
  FakeServer server(Behavior{.kind = Behavior::kStall, .first_ms = 10, .tokens = 5});
  auto cfg = config_for(server, 2, 2);
  cfg.timeout_s = 0.8;
  const auto t0 = Clock::now();
  const auto res = run_benchmark(cfg);
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, cfg.timeout_s + 2.0);  // the bound plus generous slack, never a speed check
  ASSERT_EQ(res.records.size(), 2u);
  for (const auto& r : res.records) {
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.error_kind, "timeout");
    EXPECT_GE(r.e2e_ms, 800.0 - 1);
    EXPECT_TRUE(r.ttft_ms.has_value());  // one token came before the stall
  }
  EXPECT_EQ(res.summary.errors.at("timeout"), 2);
}

TEST(BenchClient, StreamClosedMidwayIsDisconnected) {
  FakeServer server(
      Behavior{.kind = Behavior::kCloseMidStream, .first_ms = 10, .gap_ms = 10, .tokens = 5});
  const auto res = run_benchmark(config_for(server, 2));
  for (const auto& r : res.records) {
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.error_kind, "disconnected") << r.error_message;
    EXPECT_EQ(r.content_chunks, 2);
  }
  EXPECT_EQ(res.summary.failed, 2);
}

TEST(BenchClient, RefusedConnectionIsAConnectError) {
  int port;
  {
    FakeServer gone(Behavior{});
    port = gone.port();
  }
  RunConfig cfg;
  cfg.target = make_target("http://127.0.0.1:" + std::to_string(port), Endpoint::kChat, "m");
  cfg.requests = {{.prompt = "x", .output_tokens = 2}};
  cfg.num_requests = 3;
  const auto res = run_benchmark(cfg);
  EXPECT_EQ(res.summary.errors.at("connect"), 3);
}

TEST(BenchClient, DurationBoundCancelsInFlightRequests) {
  FakeServer server(Behavior{.first_ms = 10, .gap_ms = 50, .tokens = 200});  // 10 s per request
  auto cfg = config_for(server, 0, 2);
  cfg.num_requests = 0;  // time bound only
  cfg.duration_s = 0.5;
  const auto t0 = Clock::now();
  const auto res = run_benchmark(cfg);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), cfg.duration_s + 2.0);
  EXPECT_EQ(res.summary.cancelled, 2);
  EXPECT_EQ(res.summary.failed, 0);
  EXPECT_EQ(res.summary.completed, 0);
  EXPECT_DOUBLE_EQ(res.summary.duration_s, 0.5);
}

TEST(BenchClient, RejectsUnboundedRunsAndHttps) {
  FakeServer server(Behavior{});
  auto cfg = config_for(server, 1);
  cfg.num_requests = 0;
  EXPECT_THROW(run_benchmark(cfg), Error);
  EXPECT_THROW(make_target("https://example.com", Endpoint::kChat, "m"), Error);
}

}  // namespace
}  // namespace tessera::bench
