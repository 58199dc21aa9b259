// bench arrivals: when an open-loop run releases each request. A Poisson process (exponential
// gaps with mean 1/rate) from a fixed seed, so two runs with one seed send at the same offsets.
// Each generator owns its RNG; use one per run.
#pragma once

#include <cstdint>
#include <limits>
#include <random>

namespace tessera::bench {

class PoissonArrivals {
 public:
  // rate in requests/s; infinity releases every request at time 0 (a burst).
  PoissonArrivals(double rate, uint64_t seed);
  // Seconds from the start of the run: 0 for the first request, then the sum of the gaps.
  double next();

 private:
  double rate_;
  double t_ = 0;
  bool first_ = true;
  std::mt19937_64 rng_;
  std::exponential_distribution<double> gap_;
};

}  // namespace tessera::bench
