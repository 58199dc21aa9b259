// /metrics text through prometheus-cpp: names with colons, escaped label values, cumulative
// histogram buckets ending in +Inf, _sum and _count, HELP and TYPE lines.
#include "tessera/server/prometheus_text.h"

#include <gtest/gtest.h>

namespace tessera::server {
namespace {

TEST(PrometheusText, RendersTheRegistrySnapshot) {
  MetricsRegistry m;
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 5);
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 2);
  m.gauge_set("tessera:num_requests_running", "Running", 3, {{"model", "a\"b\\c\nd"}});
  for (double v : {0.05, 0.2, 3.0})
    m.histogram_observe("tessera:ttft_seconds", "TTFT", {0.1, 1.0}, v);
  const std::string out = prometheus_text(m.snapshot());
  auto has = [&](const std::string& s) { return out.find(s) != std::string::npos; };
  EXPECT_TRUE(has("# HELP tessera:prompt_tokens_total Prompt tokens\n")) << out;
  EXPECT_TRUE(has("# TYPE tessera:prompt_tokens_total counter\n")) << out;
  EXPECT_TRUE(has("\ntessera:prompt_tokens_total 7")) << out;
  EXPECT_TRUE(has("tessera:num_requests_running{model=\"a\\\"b\\\\c\\nd\"} 3")) << out;
  EXPECT_TRUE(has("# TYPE tessera:ttft_seconds histogram\n")) << out;
  EXPECT_TRUE(has("tessera:ttft_seconds_bucket{le=\"0.1\"} 1")) << out;
  EXPECT_TRUE(has("tessera:ttft_seconds_bucket{le=\"1\"} 2")) << out;
  EXPECT_TRUE(has("tessera:ttft_seconds_bucket{le=\"+Inf\"} 3")) << out;
  EXPECT_TRUE(has("tessera:ttft_seconds_count 3")) << out;
  EXPECT_TRUE(has("tessera:ttft_seconds_sum 3.25")) << out;
}

}  // namespace
}  // namespace tessera::server
