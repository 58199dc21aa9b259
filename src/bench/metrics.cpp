#include "tessera/bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "tessera/core/error.h"

namespace tessera::bench {

std::optional<double> percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::nullopt;
  if (!(p >= 0 && p <= 100))
    fail(ErrorCode::kInvalidArgument, "percentile ", p, " is not in [0, 100]");
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * double(values.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - double(lo));
}

LatencyStats latency_stats(const std::vector<double>& values) {
  LatencyStats s;
  s.count = values.size();
  if (values.empty()) return s;
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
  s.p50 = percentile(values, 50);
  s.p90 = percentile(values, 90);
  s.p99 = percentile(values, 99);
  return s;
}

bool meets_slo(const RequestRecord& r, const Slo& slo) {
  if (!r.success) return false;
  if (slo.ttft_ms && (!r.ttft_ms || *r.ttft_ms > *slo.ttft_ms)) return false;
  // A one-token answer has no TPOT; it cannot miss that target.
  if (slo.tpot_ms && r.tpot_ms && *r.tpot_ms > *slo.tpot_ms) return false;
  if (slo.e2e_ms && r.e2e_ms > *slo.e2e_ms) return false;
  return true;
}

Slo parse_slo(const std::string& text) {
  Slo slo;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::string item;
  while (in >> item) {
    const auto colon = item.find(':');
    if (colon == std::string::npos)
      fail(ErrorCode::kInvalidArgument, "goodput target '", item,
           "' is not metric:ms (e.g. ttft:500)");
    const std::string key = item.substr(0, colon);
    double ms = 0;
    try {
      size_t pos = 0;
      ms = std::stod(item.substr(colon + 1), &pos);
      if (pos != item.size() - colon - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      fail(ErrorCode::kInvalidArgument, "goodput target '", item, "' needs a number of ms");
    }
    if (!(ms > 0)) fail(ErrorCode::kInvalidArgument, "goodput target '", item, "' must be > 0 ms");
    if (key == "ttft") {
      slo.ttft_ms = ms;
    } else if (key == "tpot") {
      slo.tpot_ms = ms;
    } else if (key == "e2e" || key == "e2el") {
      slo.e2e_ms = ms;
    } else {
      fail(ErrorCode::kInvalidArgument, "unknown goodput metric '", key, "' (ttft, tpot, e2e)");
    }
  }
  return slo;
}

Summary summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo) {
  Summary s;
  s.duration_s = duration_s;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const auto& r : records) {
    if (r.warmup) continue;
    if (r.error_kind == "cancelled") {
      ++s.cancelled;
      continue;
    }
    if (!r.success) {
      ++s.failed;
      ++s.errors[r.error_kind.empty() ? "unknown" : r.error_kind];
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.input_tokens;
    s.total_output_tokens += r.output_tokens;
    s.usage_reported = s.usage_reported && r.usage_reported;
    if (r.ttft_ms) ttft.push_back(*r.ttft_ms);
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    if (r.tpot_ms) tpot.push_back(*r.tpot_ms);
    e2e.push_back(r.e2e_ms);
    if (meets_slo(r, slo)) ++s.good_requests;
  }
  s.ttft_ms = latency_stats(ttft);
  s.itl_ms = latency_stats(itl);
  s.tpot_ms = latency_stats(tpot);
  s.e2e_ms = latency_stats(e2e);
  if (duration_s > 0) {
    s.request_throughput = double(s.completed) / duration_s;
    s.output_token_throughput = double(s.total_output_tokens) / duration_s;
    s.total_token_throughput = double(s.total_input_tokens + s.total_output_tokens) / duration_s;
    s.goodput = double(s.good_requests) / duration_s;
  }
  return s;
}

namespace {
nlohmann::ordered_json opt(const std::optional<double>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}
}  // namespace

nlohmann::ordered_json to_json(const RequestRecord& r) {
  return {{"index", r.index},
          {"success", r.success},
          {"error", r.error_kind.empty() ? nlohmann::ordered_json(nullptr)
                                         : nlohmann::ordered_json(r.error_kind)},
          {"error_message", r.error_message},
          {"http_status", r.http_status},
          {"scheduled_s", r.scheduled_s},
          {"start_s", r.start_s},
          {"ttft_ms", opt(r.ttft_ms)},
          {"itl_ms", r.itl_ms},
          {"tpot_ms", opt(r.tpot_ms)},
          {"e2e_ms", r.e2e_ms},
          {"expected_input_tokens", r.expected_input_tokens},
          {"expected_output_tokens", r.expected_output_tokens},
          {"input_tokens", r.input_tokens},
          {"output_tokens", r.output_tokens},
          {"content_chunks", r.content_chunks},
          {"token_counts_from", r.usage_reported ? "usage" : "counted"},
          {"finish_reason", r.finish_reason}};
}

nlohmann::ordered_json to_json(const LatencyStats& s) {
  return {{"mean", opt(s.mean)},
          {"p50", opt(s.p50)},
          {"p90", opt(s.p90)},
          {"p99", opt(s.p99)},
          {"count", s.count}};
}

nlohmann::ordered_json to_json(const Slo& slo) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (slo.ttft_ms) j["ttft_ms"] = *slo.ttft_ms;
  if (slo.tpot_ms) j["tpot_ms"] = *slo.tpot_ms;
  if (slo.e2e_ms) j["e2e_ms"] = *slo.e2e_ms;
  return j;
}

nlohmann::ordered_json to_json(const Summary& s, const Slo& slo) {
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [k, v] : s.errors) errors[k] = v;
  return {{"completed", s.completed},
          {"failed", s.failed},
          {"cancelled", s.cancelled},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.total_input_tokens},
          {"total_output_tokens", s.total_output_tokens},
          {"token_counts_from", s.usage_reported ? "usage" : "counted (some or all requests)"},
          {"ttft_ms", to_json(s.ttft_ms)},
          {"itl_ms", to_json(s.itl_ms)},
          {"tpot_ms", to_json(s.tpot_ms)},
          {"e2e_ms", to_json(s.e2e_ms)},
          {"request_throughput", s.request_throughput},
          {"output_token_throughput", s.output_token_throughput},
          {"total_token_throughput", s.total_token_throughput},
          {"goodput", s.goodput},
          {"good_requests", s.good_requests},
          {"goodput_slo", to_json(slo)},
          {"errors", errors}};
}

}  // namespace tessera::bench
