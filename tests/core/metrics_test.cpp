// The registry's values and snapshots (the rendering is prometheus-cpp's: tests/server).
#include "tessera/core/metrics.h"

#include <gtest/gtest.h>

namespace tessera {
namespace {

TEST(Metrics, SnapshotsHoldEveryFamilySeriesAndBucket) {
  MetricsRegistry m;
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 5);
  m.counter_add("tessera:prompt_tokens_total", "Prompt tokens", 2);
  m.gauge_set("tessera:num_requests_running", "Running", 3, {{"model", "a"}});
  m.gauge_set("tessera:num_requests_running", "Running", 4, {{"model", "a"}});
  for (double v : {0.05, 0.2, 3.0})
    m.histogram_observe("tessera:ttft_seconds", "TTFT", {0.1, 1.0}, v);
  EXPECT_DOUBLE_EQ(m.value("tessera:prompt_tokens_total"), 7.0);
  EXPECT_DOUBLE_EQ(m.value("tessera:num_requests_running", {{"model", "a"}}), 4.0);
  EXPECT_DOUBLE_EQ(m.value("tessera:num_requests_running", {{"model", "b"}}), 0.0);
  const auto snap = m.snapshot();
  ASSERT_EQ(snap.size(), 3u);  // by name
  EXPECT_EQ(snap[0].name, "tessera:num_requests_running");
  EXPECT_EQ(snap[0].type, "gauge");
  EXPECT_EQ(snap[1].type, "counter");
  const MetricFamilySnapshot& h = snap[2];
  EXPECT_EQ(h.type, "histogram");
  ASSERT_EQ(h.samples.size(), 1u);
  EXPECT_EQ(h.samples[0].bucket_counts, (std::vector<uint64_t>{1, 1, 1}));  // per bucket
  EXPECT_EQ(h.samples[0].count, 3u);
  EXPECT_DOUBLE_EQ(h.samples[0].sum, 3.25);
  EXPECT_DEATH(m.gauge_set("tessera:prompt_tokens_total", "x", 1),
               "used as gauge");  // one type per name
}

}  // namespace
}  // namespace tessera
