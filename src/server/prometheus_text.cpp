// Registry snapshots -> prometheus-cpp's MetricFamily/ClientMetric -> TextSerializer.
#include "tessera/server/prometheus_text.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>

#include "tessera/core/error.h"

namespace tessera::server {
namespace {

prometheus::MetricType type_of(const MetricFamilySnapshot& f) {
  if (f.type == "counter") return prometheus::MetricType::Counter;
  if (f.type == "gauge") return prometheus::MetricType::Gauge;
  if (f.type == "histogram") return prometheus::MetricType::Histogram;
  fail(ErrorCode::kInternal, "metric ", f.name, " has unknown type ", f.type);
}

prometheus::ClientMetric client_metric(prometheus::MetricType type, const MetricSample& s) {
  prometheus::ClientMetric m;
  for (const auto& [k, v] : s.labels) m.label.push_back({k, v});
  switch (type) {
    case prometheus::MetricType::Counter:
      m.counter.value = s.value;
      break;
    case prometheus::MetricType::Gauge:
      m.gauge.value = s.value;
      break;
    default: {
      // The registry keeps per-bucket counts; the format wants them cumulative, ending in +Inf.
      m.histogram.sample_count = s.count;
      m.histogram.sample_sum = s.sum;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s.bucket_counts.size(); ++i) {
        cumulative += s.bucket_counts[i];
        m.histogram.bucket.push_back(
            {.cumulative_count = cumulative,
             .upper_bound =
                 i < s.bounds.size() ? s.bounds[i] : std::numeric_limits<double>::infinity()});
      }
    }
  }
  return m;
}

}  // namespace

std::string prometheus_text(const std::vector<MetricFamilySnapshot>& families) {
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (const MetricFamilySnapshot& f : families) {
    prometheus::MetricFamily fam{.name = f.name, .help = f.help, .type = type_of(f), .metric = {}};
    for (const MetricSample& s : f.samples) fam.metric.push_back(client_metric(fam.type, s));
    out.push_back(std::move(fam));
  }
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace tessera::server
