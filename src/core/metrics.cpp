#include "tessera/core/metrics.h"

#include "tessera/core/error.h"

namespace tessera {

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, const char* type,
                                                 const std::string& help) {
  auto& f = families_[name];
  if (f.type.empty()) {
    f.type = type;
    f.help = help;
  }
  TESSERA_CHECK(f.type == type, "metric ", name, " used as ", type, " and ", f.type);
  return f;
}

void MetricsRegistry::counter_add(const std::string& name, const std::string& help, double v,
                                  const Labels& labels) {
  std::lock_guard lock(mu_);
  family(name, "counter", help).values[labels] += v;
}

void MetricsRegistry::gauge_set(const std::string& name, const std::string& help, double v,
                                const Labels& labels) {
  std::lock_guard lock(mu_);
  family(name, "gauge", help).values[labels] = v;
}

void MetricsRegistry::histogram_observe(const std::string& name, const std::string& help,
                                        const std::vector<double>& buckets, double v,
                                        const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& h = family(name, "histogram", help).histograms[labels];
  if (h.bounds.empty()) {
    h.bounds = buckets;
    h.counts.assign(buckets.size() + 1, 0);
  }
  size_t i = 0;
  while (i < h.bounds.size() && v > h.bounds[i]) ++i;
  ++h.counts[i];
  h.sum += v;
  ++h.count;
}

double MetricsRegistry::value(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return 0.0;
  auto it = f->second.values.find(labels);
  return it == f->second.values.end() ? 0.0 : it->second;
}

std::vector<MetricFamilySnapshot> MetricsRegistry::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<MetricFamilySnapshot> out;
  for (const auto& [name, f] : families_) {
    MetricFamilySnapshot fam{.name = name, .help = f.help, .type = f.type};
    for (const auto& [labels, v] : f.values) fam.samples.push_back({.labels = labels, .value = v});
    for (const auto& [labels, h] : f.histograms)
      fam.samples.push_back({.labels = labels,
                             .bounds = h.bounds,
                             .bucket_counts = h.counts,
                             .sum = h.sum,
                             .count = h.count});
    out.push_back(std::move(fam));
  }
  return out;
}

}  // namespace tessera
