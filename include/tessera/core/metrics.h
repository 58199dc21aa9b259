// MetricsRegistry: counters, gauges and histograms with labels, rendered in the Prometheus text
// exposition format (version 0.0.4). The engine owns one registry and updates it from its thread;
// the HTTP /metrics handler renders it from another: all methods are thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tessera {

using Labels = std::map<std::string, std::string>;

class MetricsRegistry {
 public:
  void counter_add(const std::string& name, const std::string& help, double v = 1.0,
                   const Labels& labels = {});
  void gauge_set(const std::string& name, const std::string& help, double v,
                 const Labels& labels = {});
  // Buckets are the upper bounds (ascending); +Inf is added.
  void histogram_observe(const std::string& name, const std::string& help,
                         const std::vector<double>& buckets, double v, const Labels& labels = {});
  std::string render() const;  // text/plain; version=0.0.4
  double value(const std::string& name, const Labels& labels = {}) const;  // counters/gauges (tests)

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
