#include "tessera/bench/arrivals.h"

#include <cmath>

#include "tessera/core/error.h"

namespace tessera::bench {

PoissonArrivals::PoissonArrivals(double rate, uint64_t seed)
    : rate_(rate), rng_(seed), gap_(std::isinf(rate) || !(rate > 0) ? 1.0 : rate) {
  if (!(rate > 0)) fail(ErrorCode::kInvalidArgument, "--request-rate must be > 0, got ", rate);
}

double PoissonArrivals::next() {
  if (std::isinf(rate_)) return 0.0;
  // vLLM's benchmark sends the first request at once and waits a gap after each.
  if (first_) {
    first_ = false;
    return t_;
  }
  t_ += gap_(rng_);
  return t_;
}

}  // namespace tessera::bench
