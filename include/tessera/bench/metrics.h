// bench metrics: what one streamed request measured (RequestRecord) and the arithmetic that turns
// a run's records into the summary (percentiles, throughput, goodput, errors by kind). Pure
// functions over values; nothing here owns threads or sockets.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace tessera::bench {

// One request as the client saw it. Times are milliseconds from the moment the request was sent
// (connect included), except start_s/scheduled_s which are seconds from the start of the run.
struct RequestRecord {
  int64_t index = -1;   // position in the workload
  bool warmup = false;  // warm-up requests are never summarised
  bool success = false;
  std::string error_kind;  // "" on success: http_<status>, timeout, connect, disconnected,
                           // stream_error, bad_response, cancelled
  std::string error_message;
  int http_status = 0;
  double scheduled_s = 0;              // when the arrival process released it
  double start_s = 0;                  // when it was sent (later than scheduled_s when capped)
  std::optional<double> ttft_ms;       // first non-empty content chunk
  std::vector<double> itl_ms;          // every gap between consecutive content chunks
  std::optional<double> tpot_ms;       // (e2e - ttft) / (output_tokens - 1), output_tokens > 1
  double e2e_ms = 0;                   // send to end of stream
  int64_t expected_input_tokens = 0;   // what the workload asked for (content only)
  int64_t expected_output_tokens = 0;  // max_tokens sent
  int64_t input_tokens = 0;            // usage.prompt_tokens, else expected_input_tokens
  int64_t output_tokens = 0;           // usage.completion_tokens, else the content chunk count
  int64_t content_chunks = 0;
  bool usage_reported = false;  // input/output tokens came from the server's usage
  std::string finish_reason;
};

// numpy.percentile's default ("linear"): rank = p/100 * (n-1) between the sorted neighbours.
// Empty input gives nullopt. `p` in [0, 100].
std::optional<double> percentile(std::vector<double> values, double p);

struct LatencyStats {
  std::optional<double> mean, p50, p90, p99;  // nullopt when there were no samples
  size_t count = 0;
};
LatencyStats latency_stats(const std::vector<double>& values);

// Service-level targets for goodput, in ms; a request counts when it meets every target set.
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
};
bool meets_slo(const RequestRecord& r, const Slo& slo);
// "ttft:500 tpot:50" or "ttft:500,tpot:50" (also e2e:N); throws kInvalidArgument otherwise.
Slo parse_slo(const std::string& text);

struct Summary {
  int64_t completed = 0, failed = 0, cancelled = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  LatencyStats ttft_ms, itl_ms, tpot_ms, e2e_ms;
  double request_throughput = 0;       // completed requests / s
  double output_token_throughput = 0;  // output tokens of completed requests / s
  double total_token_throughput = 0;   // (input + output) tokens / s
  double goodput = 0;                  // requests meeting every SLO / s
  int64_t good_requests = 0;
  std::map<std::string, int64_t> errors;  // kind -> count (cancelled requests excluded)
  bool usage_reported = true;             // every completed request had server usage
};

// Warm-up records are skipped; `duration_s` is the measured wall time of the run.
Summary summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo);

nlohmann::ordered_json to_json(const RequestRecord& r);
nlohmann::ordered_json to_json(const LatencyStats& s);
nlohmann::ordered_json to_json(const Summary& s, const Slo& slo);
nlohmann::ordered_json to_json(const Slo& slo);

}  // namespace tessera::bench
