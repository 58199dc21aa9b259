// MetricsRegistry: counters, gauges and histograms with labels. The engine owns one registry and
// updates it from its thread; the HTTP /metrics handler takes a snapshot from another (all methods
// are thread-safe) and renders it in the Prometheus text format through prometheus-cpp
// (server/prometheus_text.h). Keeping the values here, as plain data, keeps core and the engine
// free of the library, so the engine-only build (a GPU box without Debian packages) has them too.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tessera {

using Labels = std::map<std::string, std::string>;

// One labelled series of a family at the moment of a snapshot.
struct MetricSample {
  Labels labels;
  double value = 0;                     // counters and gauges
  std::vector<double> bounds;           // histograms: bucket upper bounds (+Inf implied)
  std::vector<uint64_t> bucket_counts;  // per bucket, not cumulative; bounds.size() + 1 of them
  double sum = 0;
  uint64_t count = 0;
};

struct MetricFamilySnapshot {
  std::string name, help;
  std::string type;  // "counter", "gauge" or "histogram"
  std::vector<MetricSample> samples;
};

class MetricsRegistry {
 public:
  void counter_add(const std::string& name, const std::string& help, double v = 1.0,
                   const Labels& labels = {});
  void gauge_set(const std::string& name, const std::string& help, double v,
                 const Labels& labels = {});
  // Buckets are the upper bounds (ascending); +Inf is added.
  void histogram_observe(const std::string& name, const std::string& help,
                         const std::vector<double>& buckets, double v, const Labels& labels = {});
  std::vector<MetricFamilySnapshot> snapshot() const;  // by name, series by labels
  double value(const std::string& name,
               const Labels& labels = {}) const;  // counters/gauges (tests)

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket (not cumulative)
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string type, help;
    std::map<Labels, double> values;
    std::map<Labels, Histogram> histograms;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  Family& family(const std::string& name, const char* type, const std::string& help);
};

}  // namespace tessera
