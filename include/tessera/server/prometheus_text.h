// The /metrics body: registry snapshots rendered in the Prometheus text exposition format
// (version 0.0.4) by prometheus-cpp's TextSerializer (Debian prometheus-cpp-dev), keeping every
// metric name, label and help text the registries hold. Stateless.
#pragma once

#include <string>
#include <vector>

#include "tessera/core/metrics.h"

namespace tessera::server {

std::string prometheus_text(const std::vector<MetricFamilySnapshot>& families);

}  // namespace tessera::server
