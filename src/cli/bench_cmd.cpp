// `tessera bench`: the load-testing client for any OpenAI-compatible server (this one, vLLM,
// llama.cpp's server, TGI). One run, or `tessera bench sweep` over request rates or concurrencies
// for the throughput-latency curve; JSON per run and optional PNG plots (benchmarks/plot_bench.py).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "commands.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"

#if TESSERA_HAVE_HTTP
#include "loaded_model.h"
#include "model_registry.h"
#include "tessera/bench/runner.h"
#include "tessera/bench/workload.h"
#endif

namespace tessera::cli {

#if TESSERA_HAVE_HTTP
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// The options of `bench`; each default lives here, the help text in add_bench().
struct BenchOpts {
  std::string base_url = "http://127.0.0.1:8000", model = default_model().name, endpoint = "chat",
              request_rate, dataset, workload, output, tokenizer, goodput = "ttft:500 tpot:50",
              api_key, extra_body, request_rates, concurrencies, output_dir = "bench-results",
              plot_script, label = "sweep", mode;
  int concurrency = 1, max_concurrency = 0, num_requests = 100, input_len = 128,
      output_len = 128, prefix_len = 512, num_prefixes = 1, warmup = 0;
  uint64_t seed = 0;
  double range_ratio = 0.0, duration = 0.0, timeout = 300.0, temperature = 0.0;
  bool no_ignore_eos = false, plot = false, quiet = false;
  NamedOptions options;  // by flag name: was it given?
  bool given(const std::string& name) const { return options.given(name); }
};

std::vector<double> parse_list(const std::string& s, const char* what) {
  std::vector<double> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    try {
      out.push_back(item == "inf" ? INFINITY : std::stod(item));
    } catch (const std::exception&) {
      fail(ErrorCode::kInvalidArgument, what, ": '", item, "' is not a number");
    }
    if (!(out.back() > 0)) fail(ErrorCode::kInvalidArgument, what, " must be > 0, got ", item);
  }
  if (out.empty()) fail(ErrorCode::kInvalidArgument, what, " is empty");
  return out;
}

double parse_rate(const BenchOpts& o) {
  if (o.request_rate == "inf") return INFINITY;
  try {
    size_t pos = 0;
    const double r = std::stod(o.request_rate, &pos);
    if (pos == o.request_rate.size() && r >= 0) return r;
  } catch (const std::exception&) {
  }
  fail(ErrorCode::kInvalidArgument, "--request-rate expects a number >= 0 or inf, got '",
       o.request_rate, "'");
}

// The tokenizer that sizes synthetic prompts: a tokenizer.json, a model (path or known name), or
// "none" (approximate lengths). Without --tokenizer the default model is tried quietly.
std::unique_ptr<tokenizer::Tokenizer> load_bench_tokenizer(const BenchOpts& o, std::string& name) {
  const auto arg = o.given("tokenizer") ? std::optional<std::string>(o.tokenizer) : std::nullopt;
  if (arg && *arg == "none") {
    name = "none (approximate lengths)";
    return nullptr;
  }
  const std::string which = arg.value_or(default_model().name);
  try {
    name = which;
    if (which.size() > 5 && which.ends_with(".json")) {
      return std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_hf_json(which));
    }
    return load_model(which, /*with_weights=*/false).tokenizer;
  } catch (const Error& e) {
    if (arg) throw;
    TESSERA_LOG_WARN("no tokenizer ({}); prompt lengths are approximate", e.what());
    name = "none (approximate lengths)";
    return nullptr;
  }
}

struct Workload {
  std::vector<bench::RequestSpec> requests, warmup;
  json config;
};

Workload make_workload(const BenchOpts& o, size_t num_requests, size_t warmup, uint64_t seed) {
  std::string tok_name;
  auto tok = load_bench_tokenizer(o, tok_name);
  bench::PromptBuilder pb(tok.get());
  Workload w;
  const auto dataset = o.given("dataset") ? std::optional<std::string>(o.dataset) : std::nullopt;
  const std::string kind = o.given("workload") ? o.workload : dataset ? "sharegpt" : "random";
  // With only a time bound, a pool of prompts is cycled.
  const size_t pool = num_requests ? num_requests : 1000;
  w.config = {{"workload", kind}, {"tokenizer", tok_name}};
  if (kind == "sharegpt") {
    if (!dataset) fail(ErrorCode::kInvalidArgument, "--workload sharegpt needs --dataset FILE");
    bench::ShareGptParams p{
        .num_requests = pool + warmup, .seed = seed, .output_len = o.given("output-len") ? o.output_len : 0};
    auto all = bench::load_sharegpt(*dataset, p, pb);
    const size_t nw = std::min(warmup, all.size() > 1 ? all.size() - 1 : 0);
    w.warmup.assign(all.end() - long(nw), all.end());
    w.requests.assign(all.begin(), all.end() - long(nw));
    w.config["dataset"] = *dataset;
    if (p.output_len > 0) w.config["output_len"] = p.output_len;
    return w;
  }
  if (kind != "random" && kind != "shared-prefix")
    fail(ErrorCode::kInvalidArgument, "--workload must be random, shared-prefix or sharegpt");
  bench::SyntheticParams p{.num_requests = pool,
                           .input_len = o.input_len,
                           .output_len = o.output_len,
                           .range_ratio = o.range_ratio,
                           .seed = seed};
  if (kind == "shared-prefix") {
    p.prefix_len = o.prefix_len;
    p.num_prefixes = o.num_prefixes;
    w.config["prefix_len"] = p.prefix_len;
    w.config["num_prefixes"] = p.num_prefixes;
  }
  w.requests = bench::make_synthetic(p, pb);
  auto wp = p;
  wp.num_requests = warmup;
  wp.seed = seed ^ 0x9e3779b97f4a7c15ull;  // warm-up prompts differ from the measured ones
  if (warmup) w.warmup = bench::make_synthetic(wp, pb);
  w.config["input_len"] = p.input_len;
  w.config["output_len"] = p.output_len;
  w.config["range_ratio"] = p.range_ratio;
  return w;
}

bench::RunConfig base_config(const BenchOpts& o) {
  bench::RunConfig cfg;
  cfg.target =
      bench::make_target(o.base_url, bench::parse_endpoint(o.endpoint), o.model);
  cfg.target.api_key = o.api_key;
  cfg.target.temperature = o.temperature;
  cfg.target.ignore_eos = !o.no_ignore_eos;
  if (o.given("extra-body")) {
    cfg.target.extra_body = nlohmann::json::parse(o.extra_body, nullptr, false);
    if (!cfg.target.extra_body.is_object())
      fail(ErrorCode::kInvalidArgument, "--extra-body must be a JSON object");
  }
  // With --duration and no --num-requests, the run is bounded by time only.
  const int n = o.given("num-requests") || !o.given("duration") ? o.num_requests : 0;
  cfg.num_requests = size_t(n);
  cfg.duration_s = o.duration;
  cfg.timeout_s = o.timeout;
  cfg.seed = o.seed;
  cfg.slo = bench::parse_slo(o.goodput);
  if (o.given("request-rate") && o.given("concurrency"))
    fail(ErrorCode::kInvalidArgument,
         "give --request-rate (with --max-concurrency) or --concurrency");
  if (o.given("request-rate")) {
    cfg.request_rate = parse_rate(o);
    cfg.concurrency = o.max_concurrency;
  } else {
    cfg.concurrency = o.concurrency;
  }
  return cfg;
}

void write_json(const std::string& path, const json& j) {
  if (const auto dir = fs::path(path).parent_path(); !dir.empty()) fs::create_directories(dir);
  std::ofstream f(path);
  if (!f) fail(ErrorCode::kNotFound, "cannot write ", path);
  f << j.dump(1) << "\n";
}

// benchmarks/plot_bench.py: --plot-script, $TESSERA_SOURCE_DIR, next to the binary's build dir,
// or the working directory.
std::string find_plot_script(const BenchOpts& o) {
  if (o.given("plot-script")) return o.plot_script;
  std::vector<fs::path> cands;
  if (const char* s = std::getenv("TESSERA_SOURCE_DIR"))
    cands.push_back(fs::path(s) / "benchmarks/plot_bench.py");
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) cands.push_back(exe.parent_path().parent_path() / "benchmarks/plot_bench.py");
  cands.push_back("benchmarks/plot_bench.py");
  for (const auto& c : cands)
    if (fs::exists(c)) return c.string();
  fail(ErrorCode::kNotFound, "benchmarks/plot_bench.py not found; pass --plot-script");
}

void plot(const BenchOpts& o, const std::string& kind, const std::string& in, const std::string& png) {
  const char* py = std::getenv("TESSERA_PYTHON");
  const std::string cmd = std::string("'") + (py && *py ? py : "python3") + "' '" +
                          find_plot_script(o) + "' " + kind + " '" + in + "' -o '" + png + "'";
  if (std::system(cmd.c_str()) != 0)
    TESSERA_LOG_WARN("plotting failed: {}", cmd);
  else
    std::cout << "plot: " << png << "\n";
}

int run_once(const BenchOpts& o) {
  bench::RunConfig cfg = base_config(o);
  const size_t warmup = size_t(o.warmup);
  Workload w = make_workload(o, cfg.num_requests, warmup, cfg.seed);
  cfg.requests = std::move(w.requests);
  cfg.warmup_requests = std::move(w.warmup);
  const auto result = bench::run_benchmark(cfg);
  bench::print_summary(std::cout, "Serving Benchmark Result", result.summary, cfg.slo);
  if (o.given("output")) {
    write_json(o.output, bench::result_json(cfg, result, w.config));
    std::cout << "results: " << o.output << "\n";
    if (o.plot) plot(o, "run", o.output, fs::path(o.output).replace_extension(".png").string());
  }
  return 0;
}

std::string fmt(double v, const char* f = "%.1f") {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string stat(const json& s, const char* metric, const char* p) {
  const json& v = s[metric][p];
  return v.is_null() ? "-" : fmt(v.get<double>());
}

int run_sweep(const BenchOpts& o) {
  const bool by_rate = o.given("request-rates");
  if (by_rate == o.given("concurrencies"))
    fail(ErrorCode::kInvalidArgument,
         "bench sweep needs --request-rates R1,R2,... or --concurrencies C1,C2,...");
  const auto values = parse_list(by_rate ? o.request_rates : o.concurrencies,
                                 by_rate ? "--request-rates" : "--concurrencies");
  const std::string& dir = o.output_dir;
  const std::string& label = o.label;
  const size_t warmup = size_t(o.warmup);
  json sweep = {{"mode", by_rate ? "request_rate" : "concurrency"},
                {"label", label},
                {"points", json::array()}};
  for (size_t i = 0; i < values.size(); ++i) {
    bench::RunConfig cfg = base_config(o);
    if (by_rate) {
      cfg.request_rate = values[i];
      cfg.concurrency = o.max_concurrency;
    } else {
      cfg.request_rate = 0;
      cfg.concurrency = int(values[i]);
    }
    // A fresh seed per point: repeated prompts would hit the server's prefix cache.
    cfg.seed += i;
    Workload w = make_workload(o, cfg.num_requests, i == 0 ? warmup : 0, cfg.seed);
    cfg.requests = std::move(w.requests);
    cfg.warmup_requests = std::move(w.warmup);
    const auto result = bench::run_benchmark(cfg);
    const std::string name = (by_rate ? "rate-" : "concurrency-") +
                             (std::isinf(values[i]) ? std::string("inf") : fmt(values[i], "%g"));
    const std::string file = (fs::path(dir) / (label + "-" + name + ".json")).string();
    json j = bench::result_json(cfg, result, w.config);
    write_json(file, j);
    if (!o.quiet)
      bench::print_summary(std::cout, label + " " + name, result.summary, cfg.slo);
    if (i == 0) sweep["config"] = j["config"];
    const json value = std::isinf(values[i]) ? json("inf")
                       : by_rate             ? json(values[i])
                                             : json(int(values[i]));
    sweep["points"].push_back({{"value", value},
                               {"file", fs::path(file).filename().string()},
                               {"summary", j["summary"]}});
  }
  const std::string sweep_file = (fs::path(dir) / (label + "-sweep.json")).string();
  write_json(sweep_file, sweep);
  std::printf("\n%-12s %9s %10s %10s %10s %10s %10s %10s %8s\n", by_rate ? "rate" : "concurrency",
              "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p50",
              "errors");
  for (const auto& p : sweep["points"]) {
    const json& s = p["summary"];
    std::printf("%-12s %9.2f %10.1f %10s %10s %10s %10s %10s %8lld\n", p["value"].dump().c_str(),
                s["request_throughput"].get<double>(), s["output_token_throughput"].get<double>(),
                stat(s, "ttft_ms", "p50").c_str(), stat(s, "ttft_ms", "p99").c_str(),
                stat(s, "tpot_ms", "p50").c_str(), stat(s, "tpot_ms", "p99").c_str(),
                stat(s, "e2e_ms", "p50").c_str(),
                static_cast<long long>(s["failed"].get<int64_t>()));
  }
  std::cout << "sweep: " << sweep_file << "\n";
  if (o.plot) {
    plot(o, "sweep", sweep_file, fs::path(sweep_file).replace_extension(".png").string());
    const auto& last = sweep["points"].back()["file"].get<std::string>();
    plot(o, "run", (fs::path(dir) / last).string(),
         (fs::path(dir) / (label + "-latency.png")).string());
  }
  return 0;
}

}  // namespace

#endif

Command add_bench(CLI::App& root) {
  CLI::App* c = root.add_subcommand(
      "bench", "load-test any OpenAI-compatible server (`bench sweep`: over rates or concurrencies)");
#if !TESSERA_HAVE_HTTP
  return {c, []() -> int {
            fail(ErrorCode::kUnsupported, "this build has no bench client (TESSERA_SERVER=OFF)");
          }};
#else
  auto o = std::make_shared<BenchOpts>();
  NamedOptions& opts = o->options;
  opts.attach(c);
  c->add_option("mode", o->mode, "sweep: one run per --request-rates or --concurrencies value")
      ->check(CLI::IsMember({"sweep"}));
  opts.add("base-url", o->base_url, "the server");
  opts.add("model", o->model, "the model name sent in requests");
  opts.add("endpoint", o->endpoint, "the API")->check(CLI::IsMember({"chat", "completions"}));
  opts.add("api-key", o->api_key, "sent as Authorization: Bearer KEY");
  opts.add("concurrency", o->concurrency, "requests in flight (closed loop)")
      ->check(CLI::Range(1, 1 << 20));
  opts.add("request-rate", o->request_rate, "Poisson arrivals per second, or inf (open loop)");
  opts.add("max-concurrency", o->max_concurrency, "with --request-rate: cap on requests in flight "
      "(0: none)")->check(CLI::NonNegativeNumber);
  opts.add("num-requests", o->num_requests, "requests to send (default 0 = unbounded with --duration)")
      ->check(CLI::NonNegativeNumber);
  opts.add("duration", o->duration, "seconds to run (0: until --num-requests)")
      ->check(CLI::NonNegativeNumber);
  opts.add("timeout", o->timeout, "seconds per request")->check(CLI::PositiveNumber);
  opts.add("workload", o->workload, "prompts: random, shared-prefix or sharegpt (default: sharegpt "
      "with --dataset, else random)")
      ->check(CLI::IsMember({"random", "shared-prefix", "sharegpt"}));
  opts.add("dataset", o->dataset, "a ShareGPT JSON file");
  opts.add("input-len", o->input_len, "prompt tokens (synthetic workloads)")->check(CLI::NonNegativeNumber);
  opts.add("output-len", o->output_len, "max_tokens per request (sharegpt default: the dataset's)")
      ->check(CLI::NonNegativeNumber);
  opts.add("range-ratio", o->range_ratio, "lengths vary uniformly by +-ratio")->check(CLI::Range(0.0, 1.0));
  opts.add("prefix-len", o->prefix_len, "shared-prefix: tokens of the shared prefix")
      ->check(CLI::NonNegativeNumber);
  opts.add("num-prefixes", o->num_prefixes, "shared-prefix: distinct prefixes")
      ->check(CLI::Range(1, 1 << 20));
  opts.add("tokenizer", o->tokenizer, "sizes prompts: a tokenizer.json, a model, or none (default: "
      "the default model if present)");
  opts.add("seed", o->seed, "workload seed");
  opts.add("warmup", o->warmup, "warm-up requests before measuring")->check(CLI::NonNegativeNumber);
  opts.add("goodput", o->goodput, "SLOs in ms: ttft:MS tpot:MS e2e:MS");
  opts.add("temperature", o->temperature, "sampling temperature sent")->check(CLI::Range(0.0, 2.0));
  opts.add("extra-body", o->extra_body, "a JSON object merged into each request");
  opts.add("output", o->output, "write the run's JSON here");
  opts.add("request-rates", o->request_rates, "sweep: R1,R2,... (inf allowed)");
  opts.add("concurrencies", o->concurrencies, "sweep: C1,C2,...");
  opts.add("output-dir", o->output_dir, "sweep: directory of the JSON files");
  opts.add("label", o->label, "sweep: file name prefix");
  opts.add("plot-script", o->plot_script, "benchmarks/plot_bench.py (default: found near the binary)");
  opts.flag("no-ignore-eos", o->no_ignore_eos, "let the server stop at end-of-sequence");
  opts.flag("plot", o->plot, "PNG plots next to the JSON (needs matplotlib)");
  opts.flag("quiet", o->quiet, "sweep: only the summary table");
  return {c, [o] { return o->mode == "sweep" ? run_sweep(*o) : run_once(*o); }};
#endif
}


}  // namespace tessera::cli
