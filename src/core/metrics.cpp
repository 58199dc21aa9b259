#include "tessera/core/metrics.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include "tessera/core/error.h"

namespace tessera {
namespace {

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string label_str(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_val = "") {
  std::string s;
  for (const auto& [k, v] : labels) s += (s.empty() ? "" : ",") + k + "=\"" + escape(v) + "\"";
  if (!extra_key.empty()) s += (s.empty() ? "" : ",") + extra_key + "=\"" + extra_val + "\"";
  return s.empty() ? "" : "{" + s + "}";
}

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest form that round-trips
  return std::string(buf, r.ptr);
}

}  // namespace

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

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mu_);
  std::ostringstream os;
  for (const auto& [name, f] : families_) {
    os << "# HELP " << name << " " << f.help << "\n# TYPE " << name << " " << f.type << "\n";
    for (const auto& [labels, v] : f.values) os << name << label_str(labels) << " " << num(v) << "\n";
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cum = 0;
      for (size_t i = 0; i <= h.bounds.size(); ++i) {
        cum += h.counts[i];
        const double le = i < h.bounds.size() ? h.bounds[i] : INFINITY;
        os << name << "_bucket" << label_str(labels, "le", num(le)) << " " << cum << "\n";
      }
      os << name << "_sum" << label_str(labels) << " " << num(h.sum) << "\n";
      os << name << "_count" << label_str(labels) << " " << h.count << "\n";
    }
  }
  return os.str();
}

}  // namespace tessera
