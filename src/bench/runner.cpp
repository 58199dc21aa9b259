#include "tessera/bench/runner.h"

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <optional>

#include "tessera/bench/arrivals.h"
#include "tessera/core/error.h"

namespace tessera::bench {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// One phase (warm-up or measured) of a run. Lives on the stack of run_benchmark while the
// io_context runs; every member is touched only by that context's thread.
class Phase {
 public:
  Phase(net::io_context& ioc, const tcp::resolver::results_type& eps, const RunConfig& cfg,
        const std::vector<RequestSpec>& specs, size_t total, bool warmup)
      : ioc_(ioc),
        eps_(eps),
        cfg_(cfg),
        specs_(specs),
        total_(total),
        warmup_(warmup),
        open_(!warmup && cfg.request_rate > 0),
        arrival_timer_(ioc),
        duration_timer_(ioc) {
    slots_ = cfg.concurrency > 0 ? size_t(cfg.concurrency) : 0;
    if (warmup) slots_ = std::max<size_t>(1, slots_);
    if (open_) arrivals_.emplace(cfg.request_rate, cfg.seed);
  }

  void begin() {
    t0_ = Clock::now();
    if (!warmup_ && cfg_.duration_s > 0) {
      duration_timer_.expires_after(to_duration(cfg_.duration_s));
      duration_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) stop();
      });
    }
    if (open_) {
      next_arrival();
    } else {
      while (released_ < total_ && inflight_.size() < slots_) launch(released_++, now_s());
    }
    maybe_finish();
  }

  std::vector<RequestRecord>& records() { return records_; }
  // Wall time of the phase: to the last completion, or to the duration bound when it cut in.
  double duration_s() const { return stopped_ ? cfg_.duration_s : end_s_; }

 private:
  static Clock::duration to_duration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
  double now_s() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  void launch(size_t idx, double scheduled_s) {
    RequestRecord rec{
        .index = int64_t(idx), .warmup = warmup_, .scheduled_s = scheduled_s, .start_s = now_s()};
    // Handlers never run inside the initiating call, so the map entry exists before `done`.
    inflight_[idx] = StreamCall::start(
        ioc_, eps_, cfg_.target, specs_[idx % specs_.size()], std::move(rec), cfg_.timeout_s,
        [this, idx](RequestRecord r) { on_done(idx, std::move(r)); });
  }

  void on_done(size_t idx, RequestRecord r) {
    inflight_.erase(idx);
    end_s_ = std::max(end_s_, now_s());
    records_.push_back(std::move(r));
    if (!stopped_) {
      if (open_) {
        if (!pending_.empty() && (slots_ == 0 || inflight_.size() < slots_)) {
          auto [i, at] = pending_.front();
          pending_.pop_front();
          launch(i, at);
        }
      } else if (released_ < total_) {
        launch(released_++, now_s());
      }
    }
    maybe_finish();
  }

  void next_arrival() {
    if (stopped_ || scheduled_ >= total_) return;
    const double at = arrivals_->next();
    const size_t idx = scheduled_++;
    arrival_timer_.expires_at(t0_ + to_duration(at));
    arrival_timer_.async_wait([this, idx, at](boost::system::error_code ec) {
      if (ec || stopped_) return;
      ++released_;
      if (slots_ > 0 && inflight_.size() >= slots_) {
        pending_.emplace_back(idx, at);  // over the cap: waits for a slot, TTFT starts at send
      } else {
        launch(idx, at);
      }
      next_arrival();
      maybe_finish();
    });
  }

  void maybe_finish() {
    if ((stopped_ || released_ >= total_) && inflight_.empty() && pending_.empty()) {
      arrival_timer_.cancel();
      duration_timer_.cancel();
    }
  }

  void stop() {
    stopped_ = true;
    arrival_timer_.cancel();
    pending_.clear();
    // cancel() reports synchronously and on_done erases from the map: iterate over a copy.
    std::vector<std::shared_ptr<StreamCall>> calls;
    for (auto& [i, c] : inflight_) calls.push_back(c);
    for (auto& c : calls) c->cancel("cancelled");
  }

  net::io_context& ioc_;
  const tcp::resolver::results_type& eps_;
  const RunConfig& cfg_;
  const std::vector<RequestSpec>& specs_;
  size_t total_;
  bool warmup_, open_;
  size_t slots_ = 1;
  net::steady_timer arrival_timer_, duration_timer_;
  std::optional<PoissonArrivals> arrivals_;
  Clock::time_point t0_;
  size_t scheduled_ = 0;  // open loop: arrivals drawn (the timer holds the last one)
  size_t released_ = 0;   // sent or queued at the cap
  bool stopped_ = false;
  double end_s_ = 0;
  std::map<size_t, std::shared_ptr<StreamCall>> inflight_;
  std::deque<std::pair<size_t, double>> pending_;
  std::vector<RequestRecord> records_;
};

}  // namespace

BenchResult run_benchmark(const RunConfig& cfg) {
  if (cfg.requests.empty()) fail(ErrorCode::kInvalidArgument, "the workload has no requests");
  if (cfg.num_requests == 0 && !(cfg.duration_s > 0))
    fail(ErrorCode::kInvalidArgument, "bound the run with --num-requests and/or --duration");
  if (cfg.request_rate <= 0 && cfg.concurrency < 1)
    fail(ErrorCode::kInvalidArgument, "--concurrency must be >= 1 without --request-rate");
  if (!(cfg.timeout_s > 0)) fail(ErrorCode::kInvalidArgument, "--timeout must be > 0");
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  const auto eps = resolver.resolve(cfg.target.host, cfg.target.port, ec);
  if (ec)
    fail(ErrorCode::kUnavailable, "cannot resolve ", cfg.target.host, ":", cfg.target.port, ": ",
         ec.message());

  if (!cfg.warmup_requests.empty()) {
    Phase warm(ioc, eps, cfg, cfg.warmup_requests, cfg.warmup_requests.size(), /*warmup=*/true);
    warm.begin();
    ioc.run();
    ioc.restart();
  }
  const size_t total = cfg.num_requests ? cfg.num_requests : std::numeric_limits<size_t>::max();
  Phase phase(ioc, eps, cfg, cfg.requests, total, /*warmup=*/false);
  phase.begin();
  ioc.run();

  BenchResult r;
  r.records = std::move(phase.records());
  std::sort(r.records.begin(), r.records.end(),
            [](const RequestRecord& a, const RequestRecord& b) { return a.index < b.index; });
  r.summary = summarize(r.records, phase.duration_s(), cfg.slo);
  return r;
}

nlohmann::ordered_json config_json(const RunConfig& cfg) {
  const auto& t = cfg.target;
  nlohmann::ordered_json j = {{"base_url", "http://" + t.host + ":" + t.port},
                              {"path", t.path},
                              {"endpoint", endpoint_name(t.endpoint)},
                              {"model", t.model},
                              {"mode", cfg.request_rate > 0 ? "request_rate" : "concurrency"},
                              {"num_requests", cfg.num_requests},
                              {"warmup", cfg.warmup_requests.size()},
                              {"duration_s", cfg.duration_s},
                              {"timeout_s", cfg.timeout_s},
                              {"seed", cfg.seed},
                              {"temperature", t.temperature},
                              {"ignore_eos", t.ignore_eos},
                              {"goodput_slo", to_json(cfg.slo)}};
  if (cfg.request_rate > 0) {
    j["request_rate"] = std::isinf(cfg.request_rate) ? nlohmann::ordered_json("inf")
                                                     : nlohmann::ordered_json(cfg.request_rate);
    j["max_concurrency"] = cfg.concurrency > 0 ? nlohmann::ordered_json(cfg.concurrency) : nullptr;
  } else {
    j["concurrency"] = cfg.concurrency;
  }
  return j;
}

nlohmann::ordered_json result_json(const RunConfig& cfg, const BenchResult& r,
                                   const nlohmann::ordered_json& extra_config) {
  nlohmann::ordered_json config = config_json(cfg);
  for (const auto& [k, v] : extra_config.items()) config[k] = v;
  nlohmann::ordered_json reqs = nlohmann::ordered_json::array();
  for (const auto& rec : r.records) reqs.push_back(to_json(rec));
  return {{"config", config}, {"summary", to_json(r.summary, cfg.slo)}, {"requests", reqs}};
}

void print_summary(std::ostream& os, const std::string& title, const Summary& s, const Slo& slo) {
  char line[160];
  const auto row = [&](const char* name, double v, const char* fmt = "%-40s %12.2f\n") {
    std::snprintf(line, sizeof line, fmt, name, v);
    os << line;
  };
  std::string bar(15, '=');
  os << bar << " " << title << " " << bar << "\n";
  row("Successful requests:", double(s.completed), "%-40s %12.0f\n");
  row("Failed requests:", double(s.failed), "%-40s %12.0f\n");
  if (s.cancelled) row("Cancelled at the time bound:", double(s.cancelled), "%-40s %12.0f\n");
  row("Benchmark duration (s):", s.duration_s);
  row("Total input tokens:", double(s.total_input_tokens), "%-40s %12.0f\n");
  row("Total output tokens:", double(s.total_output_tokens), "%-40s %12.0f\n");
  row("Request throughput (req/s):", s.request_throughput);
  row("Output token throughput (tok/s):", s.output_token_throughput);
  row("Total token throughput (tok/s):", s.total_token_throughput);
  std::string g = "Goodput (req/s)";
  if (slo.ttft_ms) g += " ttft<=" + std::to_string(int(*slo.ttft_ms));
  if (slo.tpot_ms) g += " tpot<=" + std::to_string(int(*slo.tpot_ms));
  if (slo.e2e_ms) g += " e2e<=" + std::to_string(int(*slo.e2e_ms));
  row((g + ":").c_str(), s.goodput);
  if (!s.errors.empty()) {
    os << "Errors:";
    for (const auto& [k, v] : s.errors) os << " " << k << "=" << v;
    os << "\n";
  }
  if (!s.usage_reported)
    os << "(output tokens counted from content chunks: no usage from the server)\n";
  std::snprintf(line, sizeof line, "%-16s %10s %10s %10s %10s\n", "latency (ms)", "mean", "p50",
                "p90", "p99");
  os << std::string(56, '-') << "\n" << line;
  const auto stat = [&](const char* name, const LatencyStats& st) {
    const auto f = [](const std::optional<double>& v) {
      char b[32];
      if (v)
        std::snprintf(b, sizeof b, "%.2f", *v);
      else
        std::snprintf(b, sizeof b, "-");
      return std::string(b);
    };
    std::snprintf(line, sizeof line, "%-16s %10s %10s %10s %10s\n", name, f(st.mean).c_str(),
                  f(st.p50).c_str(), f(st.p90).c_str(), f(st.p99).c_str());
    os << line;
  };
  stat("TTFT", s.ttft_ms);
  stat("TPOT", s.tpot_ms);
  stat("ITL", s.itl_ms);
  stat("E2E", s.e2e_ms);
  os << std::string(56, '=') << "\n";
}

}  // namespace tessera::bench
