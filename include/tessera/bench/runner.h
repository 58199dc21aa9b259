// bench runner: drives one load test against a server: warm-up requests (not counted), then the
// measured requests released by a Poisson process (open loop, optionally capped in flight) or by a
// fixed number of clients that each send the next request when their last one ends (closed loop),
// bounded by a request count and/or a duration. Everything runs on one io_context thread owned by
// run_benchmark for the length of the call.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "tessera/bench/client.h"
#include "tessera/bench/metrics.h"
#include "tessera/bench/workload.h"

namespace tessera::bench {

struct RunConfig {
  Target target;
  std::vector<RequestSpec> requests;         // cycled when more requests are sent than listed
  std::vector<RequestSpec> warmup_requests;  // sent first, one client at a time per slot
  size_t num_requests = 0;                   // 0: no count bound (needs duration_s)
  double request_rate = 0;                   // > 0: Poisson (inf: all at once); 0: closed loop
  int concurrency = 1;                       // closed loop: clients; open loop: cap (0 = none)
  double duration_s = 0;                     // 0: no time bound; else in-flight calls are cancelled
  double timeout_s = 300;                    // per request, connect to end of stream
  uint64_t seed = 0;
  Slo slo;
};

struct BenchResult {
  std::vector<RequestRecord> records;  // measured requests by index; warm-up ones excluded
  Summary summary;
};

BenchResult run_benchmark(const RunConfig& cfg);

nlohmann::ordered_json config_json(const RunConfig& cfg);
// {"config": ..., "summary": ..., "requests": [...]}; `extra_config` is merged into "config".
nlohmann::ordered_json result_json(const RunConfig& cfg, const BenchResult& r,
                                   const nlohmann::ordered_json& extra_config);
void print_summary(std::ostream& os, const std::string& title, const Summary& s, const Slo& slo);

}  // namespace tessera::bench
