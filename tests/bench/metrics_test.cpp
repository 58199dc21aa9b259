// Metric arithmetic: numpy-style percentiles against hand-computed values, the summary's
// throughput/goodput/error bookkeeping, goodput targets, Poisson arrival statistics, SSE framing.
#include "tessera/bench/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "tessera/bench/arrivals.h"
#include "tessera/bench/client.h"
#include "tessera/bench/workload.h"
#include "tessera/core/error.h"

namespace tessera::bench {
namespace {

TEST(BenchMetrics, PercentileIsNumpyLinear) {
  // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = [2.5, 3.7, 3.97]
  EXPECT_DOUBLE_EQ(*percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_NEAR(*percentile({4, 1, 3, 2}, 90), 3.7, 1e-12);
  EXPECT_NEAR(*percentile({4, 1, 3, 2}, 99), 3.97, 1e-12);
  // numpy.percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 90) = 91.0; p99 = 99.1
  std::vector<double> ten = {100, 90, 80, 70, 60, 50, 40, 30, 20, 10};
  EXPECT_NEAR(*percentile(ten, 90), 91.0, 1e-12);
  EXPECT_NEAR(*percentile(ten, 99), 99.1, 1e-12);
  EXPECT_DOUBLE_EQ(*percentile(ten, 50), 55.0);
  EXPECT_DOUBLE_EQ(*percentile({7}, 99), 7.0);
  EXPECT_FALSE(percentile({}, 50).has_value());
  EXPECT_THROW(percentile({1}, 101), Error);
}

TEST(BenchMetrics, PercentileBoundsAndOrderOnRandomData) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> d(0, 1000);
  std::vector<double> v(1 + rng() % 200);
  for (auto& x : v) x = d(rng);
  EXPECT_DOUBLE_EQ(*percentile(v, 0), *std::min_element(v.begin(), v.end()));
  EXPECT_DOUBLE_EQ(*percentile(v, 100), *std::max_element(v.begin(), v.end()));
  EXPECT_LE(*percentile(v, 50), *percentile(v, 90));
  EXPECT_LE(*percentile(v, 90), *percentile(v, 99));
  // An odd-length sample's p50 is its middle element.
  if (v.size() % 2 == 0) v.pop_back();
  if (!v.empty()) {
    auto s = v;
    std::nth_element(s.begin(), s.begin() + long(s.size() / 2), s.end());
    EXPECT_DOUBLE_EQ(*percentile(v, 50), s[s.size() / 2]);
  }
  const auto st = latency_stats(v);
  EXPECT_NEAR(*st.mean, std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()), 1e-9);
  EXPECT_EQ(st.count, v.size());
}

RequestRecord ok(double ttft, double tpot, int64_t out, std::vector<double> itl) {
  RequestRecord r;
  r.success = true;
  r.ttft_ms = ttft;
  r.tpot_ms = tpot;
  r.output_tokens = out;
  r.input_tokens = 10;
  r.itl_ms = std::move(itl);
  r.e2e_ms = ttft + tpot * double(out - 1);
  r.usage_reported = true;
  return r;
}

TEST(BenchMetrics, SummaryThroughputGoodputAndErrors) {
  std::vector<RequestRecord> recs = {ok(100, 20, 5, {10, 20, 30, 20}), ok(600, 20, 3, {20, 20}),
                                     ok(300, 80, 2, {80})};
  RequestRecord warm = ok(1, 1, 100, {1});
  warm.warmup = true;
  RequestRecord e1, e2, e3, c;
  e1.error_kind = "http_500";
  e2.error_kind = "timeout";
  e3.error_kind = "http_500";
  c.error_kind = "cancelled";
  recs.insert(recs.end(), {warm, e1, e2, e3, c});
  const Slo slo = parse_slo("ttft:500 tpot:50");
  const Summary s = summarize(recs, 2.0, slo);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.cancelled, 1);
  EXPECT_EQ(s.errors.at("http_500"), 2);
  EXPECT_EQ(s.errors.at("timeout"), 1);
  EXPECT_EQ(s.total_output_tokens, 10);
  EXPECT_EQ(s.total_input_tokens, 30);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 5.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 20.0);
  EXPECT_EQ(s.good_requests, 1);  // 600 ms TTFT and 80 ms TPOT miss
  EXPECT_DOUBLE_EQ(s.goodput, 0.5);
  EXPECT_DOUBLE_EQ(*s.ttft_ms.p50, 300.0);
  EXPECT_DOUBLE_EQ(*s.ttft_ms.mean, 1000.0 / 3);
  EXPECT_EQ(s.itl_ms.count, 7u);  // every gap of every request
  EXPECT_DOUBLE_EQ(*s.itl_ms.p50, 20.0);
  const auto j = to_json(s, slo);
  for (const char* k : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"})
    for (const char* p : {"mean", "p50", "p90", "p99"}) EXPECT_TRUE(j[k].contains(p)) << k << p;
  EXPECT_EQ(j["errors"]["http_500"], 2);
  EXPECT_DOUBLE_EQ(j["goodput"].get<double>(), 0.5);
  // Without targets every completed request is good.
  EXPECT_EQ(summarize(recs, 2.0, Slo{}).good_requests, 3);
}

TEST(BenchMetrics, EmptyRunHasNullStats) {
  const auto s = summarize({}, 0.0, Slo{});
  EXPECT_FALSE(s.ttft_ms.mean.has_value());
  EXPECT_TRUE(to_json(s, Slo{})["ttft_ms"]["p99"].is_null());
  EXPECT_EQ(s.request_throughput, 0.0);
}

TEST(BenchMetrics, ParsesGoodputTargets) {
  const Slo a = parse_slo("ttft:500,tpot:50 e2e:2000");
  EXPECT_EQ(*a.ttft_ms, 500);
  EXPECT_EQ(*a.tpot_ms, 50);
  EXPECT_EQ(*a.e2e_ms, 2000);
  EXPECT_FALSE(parse_slo("").ttft_ms.has_value());
  EXPECT_THROW(parse_slo("ttft=5"), Error);
  EXPECT_THROW(parse_slo("latency:5"), Error);
  EXPECT_THROW(parse_slo("ttft:fast"), Error);
  EXPECT_THROW(parse_slo("ttft:-1"), Error);
}

TEST(BenchArrivals, PoissonGapsHaveTheRateAndAreSeeded) {
  const uint64_t seed = std::random_device{}();
  const double rate = 8.0;
  PoissonArrivals a(rate, seed), b(rate, seed);
  EXPECT_EQ(a.next(), 0.0);
  b.next();
  const int n = 20000;
  std::vector<double> gaps;
  double prev = 0;
  for (int i = 0; i < n; ++i) {
    const double t = a.next();
    EXPECT_EQ(t, b.next());
    gaps.push_back(t - prev);
    prev = t;
  }
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / n;
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= n - 1;
  // Exponential: mean 1/rate, coefficient of variation 1 (5 standard errors of slack).
  EXPECT_NEAR(mean, 1 / rate, 5 * (1 / rate) / std::sqrt(n));
  EXPECT_NEAR(std::sqrt(var) / mean, 1.0, 0.05);
  EXPECT_GT(*std::min_element(gaps.begin(), gaps.end()), 0.0);
  PoissonArrivals burst(INFINITY, seed);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(burst.next(), 0.0);
  EXPECT_THROW(PoissonArrivals(0, 1), Error);
}

TEST(BenchWorkload, LengthsStayInTheRange) {
  std::mt19937_64 rng(std::random_device{}());
  const auto v = sample_lengths(100, 0.5, 5000, rng);
  EXPECT_EQ(*std::min_element(v.begin(), v.end()), 50);
  EXPECT_EQ(*std::max_element(v.begin(), v.end()), 150);
  for (auto x : sample_lengths(64, 0.0, 10, rng)) EXPECT_EQ(x, 64);
  EXPECT_THROW(sample_lengths(10, 1.0, 1, rng), Error);
}

TEST(BenchSse, SplitsEventsAcrossAnyChunking) {
  const std::string stream =
      "data: {\"a\":1}\n\n: comment\r\nevent: x\r\ndata:{\"b\":2}\r\n\r\ndata: [DONE]\n\n";
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 20; ++trial) {
    SseParser p;
    std::vector<std::string> got;
    size_t pos = 0;
    while (pos < stream.size()) {
      const size_t n = std::min<size_t>(1 + rng() % 7, stream.size() - pos);
      p.feed(std::string_view(stream).substr(pos, n),
             [&](std::string_view d) { got.emplace_back(d); });
      pos += n;
    }
    ASSERT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "[DONE]"}));
  }
}

TEST(BenchTarget, ParsesBaseUrls) {
  auto t = make_target("http://localhost:8000", Endpoint::kChat, "m");
  EXPECT_EQ(t.host, "localhost");
  EXPECT_EQ(t.port, "8000");
  EXPECT_EQ(t.path, "/v1/chat/completions");
  t = make_target("http://10.0.0.1:9/proxy/v1/", Endpoint::kCompletions, "m");
  EXPECT_EQ(t.host, "10.0.0.1");
  EXPECT_EQ(t.path, "/proxy/v1/completions");
  t = make_target("example.com", Endpoint::kChat, "m");
  EXPECT_EQ(t.port, "80");
  t = make_target("http://[::1]:81", Endpoint::kChat, "m");
  EXPECT_EQ(t.host, "::1");
  EXPECT_EQ(t.port, "81");
  EXPECT_THROW(parse_endpoint("embeddings"), Error);
}

}  // namespace
}  // namespace tessera::bench
