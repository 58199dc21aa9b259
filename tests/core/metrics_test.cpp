#include "tessera/core/metrics.h"

#include <gtest/gtest.h>

namespace tessera {
namespace {

TEST(Metrics, RendersPrometheusText) {
  MetricsRegistry m;
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 5);
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 2);
  m.gauge_set("tessera:num_requests_running", "Running", 3, {{"model", "a\"b"}});
  for (double v : {0.05, 0.2, 3.0}) m.histogram_observe("tessera:ttft_seconds", "TTFT", {0.1, 1.0}, v);
  const std::string out = m.render();
  EXPECT_NE(out.find("# TYPE tessera:prompt_tokens_total counter\ntessera:prompt_tokens_total 7\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera:num_requests_running{model=\"a\\\"b\"} 3"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera:ttft_seconds_bucket{le=\"0.1\"} 1"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera:ttft_seconds_bucket{le=\"1\"} 2"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera:ttft_seconds_bucket{le=\"+Inf\"} 3"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera:ttft_seconds_count 3"), std::string::npos) << out;
  EXPECT_DOUBLE_EQ(m.value("tessera:prompt_tokens_total"), 7.0);
}

}  // namespace
}  // namespace tessera
