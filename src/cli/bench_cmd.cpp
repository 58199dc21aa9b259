// `tessera bench`: the load-testing client for any OpenAI-compatible server (this one, vLLM,
// llama.cpp's server, TGI). One run, or `tessera bench sweep` over request rates or concurrencies
// for the throughput-latency curve; JSON per run and optional PNG plots (benchmarks/plot_bench.py).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "args.h"
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

#if !TESSERA_HAVE_HTTP
int cmd_bench(const std::vector<std::string>&) {
  fail(ErrorCode::kUnsupported, "this build has no bench client (TESSERA_SERVER=OFF)");
}
#else
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

const std::set<std::string> kOptions = {
    "base-url",        "model",        "endpoint",    "concurrency",  "request-rate",
    "max-concurrency", "num-requests", "input-len",   "output-len",   "range-ratio",
    "dataset",         "workload",     "prefix-len",  "num-prefixes", "seed",
    "output",          "tokenizer",    "warmup",      "duration",     "timeout",
    "goodput",         "api-key",      "temperature", "extra-body",   "request-rates",
    "concurrencies",   "output-dir",   "plot-script", "label"};
const std::set<std::string> kFlags = {"no-ignore-eos", "plot", "quiet"};

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

double parse_rate(const Args& a) {
  return a.get("request-rate") == "inf" ? INFINITY : a.get_double("request-rate", 0.0);
}

// The tokenizer that sizes synthetic prompts: a tokenizer.json, a model (path or known name), or
// "none" (approximate lengths). Without --tokenizer the default model is tried quietly.
std::unique_ptr<tokenizer::Tokenizer> load_bench_tokenizer(const Args& a, std::string& name) {
  const auto arg = a.get("tokenizer");
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

Workload make_workload(const Args& a, size_t num_requests, size_t warmup, uint64_t seed) {
  std::string tok_name;
  auto tok = load_bench_tokenizer(a, tok_name);
  bench::PromptBuilder pb(tok.get());
  Workload w;
  const auto dataset = a.get("dataset");
  const std::string kind = a.get_or("workload", dataset ? "sharegpt" : "random");
  // With only a time bound, a pool of prompts is cycled.
  const size_t pool = num_requests ? num_requests : 1000;
  w.config = {{"workload", kind}, {"tokenizer", tok_name}};
  if (kind == "sharegpt") {
    if (!dataset) fail(ErrorCode::kInvalidArgument, "--workload sharegpt needs --dataset FILE");
    bench::ShareGptParams p{
        .num_requests = pool + warmup, .seed = seed, .output_len = a.get_int("output-len", 0)};
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
                           .input_len = a.get_int("input-len", 128),
                           .output_len = a.get_int("output-len", 128),
                           .range_ratio = a.get_double("range-ratio", 0.0),
                           .seed = seed};
  if (kind == "shared-prefix") {
    p.prefix_len = a.get_int("prefix-len", 512);
    p.num_prefixes = a.get_int("num-prefixes", 1);
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

bench::RunConfig base_config(const Args& a) {
  bench::RunConfig cfg;
  cfg.target = bench::make_target(a.get_or("base-url", "http://127.0.0.1:8000"),
                                  bench::parse_endpoint(a.get_or("endpoint", "chat")),
                                  a.get_or("model", default_model().name));
  cfg.target.api_key = a.get_or("api-key", "");
  cfg.target.temperature = a.get_double("temperature", 0.0);
  cfg.target.ignore_eos = !a.flag("no-ignore-eos");
  if (auto eb = a.get("extra-body")) {
    cfg.target.extra_body = nlohmann::json::parse(*eb, nullptr, false);
    if (!cfg.target.extra_body.is_object())
      fail(ErrorCode::kInvalidArgument, "--extra-body must be a JSON object");
  }
  const int n = a.get_int("num-requests", a.get("duration") ? 0 : 100);
  if (n < 0) fail(ErrorCode::kInvalidArgument, "--num-requests must be >= 0");
  cfg.num_requests = size_t(n);
  cfg.duration_s = a.get_double("duration", 0.0);
  cfg.timeout_s = a.get_double("timeout", 300.0);
  cfg.seed = uint64_t(a.get_int("seed", 0));
  cfg.slo = bench::parse_slo(a.get_or("goodput", "ttft:500 tpot:50"));
  if (a.get("request-rate") && a.get("concurrency"))
    fail(ErrorCode::kInvalidArgument,
         "give --request-rate (with --max-concurrency) or --concurrency");
  if (a.get("request-rate")) {
    cfg.request_rate = parse_rate(a);
    cfg.concurrency = a.get_int("max-concurrency", 0);
  } else {
    cfg.concurrency = a.get_int("concurrency", 1);
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
std::string find_plot_script(const Args& a) {
  if (auto p = a.get("plot-script")) return *p;
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

void plot(const Args& a, const std::string& kind, const std::string& in, const std::string& png) {
  const char* py = std::getenv("TESSERA_PYTHON");
  const std::string cmd = std::string("'") + (py && *py ? py : "python3") + "' '" +
                          find_plot_script(a) + "' " + kind + " '" + in + "' -o '" + png + "'";
  if (std::system(cmd.c_str()) != 0)
    TESSERA_LOG_WARN("plotting failed: {}", cmd);
  else
    std::cout << "plot: " << png << "\n";
}

int run_once(const Args& a) {
  bench::RunConfig cfg = base_config(a);
  const size_t warmup = size_t(std::max(0, a.get_int("warmup", 0)));
  Workload w = make_workload(a, cfg.num_requests, warmup, cfg.seed);
  cfg.requests = std::move(w.requests);
  cfg.warmup_requests = std::move(w.warmup);
  const auto result = bench::run_benchmark(cfg);
  bench::print_summary(std::cout, "Serving Benchmark Result", result.summary, cfg.slo);
  if (auto out = a.get("output")) {
    write_json(*out, bench::result_json(cfg, result, w.config));
    std::cout << "results: " << *out << "\n";
    if (a.flag("plot")) plot(a, "run", *out, fs::path(*out).replace_extension(".png").string());
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

int run_sweep(const Args& a) {
  const bool by_rate = a.get("request-rates").has_value();
  if (by_rate == a.get("concurrencies").has_value())
    fail(ErrorCode::kInvalidArgument,
         "bench sweep needs --request-rates R1,R2,... or --concurrencies C1,C2,...");
  const auto values = parse_list(by_rate ? *a.get("request-rates") : *a.get("concurrencies"),
                                 by_rate ? "--request-rates" : "--concurrencies");
  const std::string dir = a.get_or("output-dir", "bench-results");
  const std::string label = a.get_or("label", "sweep");
  const size_t warmup = size_t(std::max(0, a.get_int("warmup", 0)));
  json sweep = {{"mode", by_rate ? "request_rate" : "concurrency"},
                {"label", label},
                {"points", json::array()}};
  for (size_t i = 0; i < values.size(); ++i) {
    bench::RunConfig cfg = base_config(a);
    if (by_rate) {
      cfg.request_rate = values[i];
      cfg.concurrency = a.get_int("max-concurrency", 0);
    } else {
      cfg.request_rate = 0;
      cfg.concurrency = int(values[i]);
    }
    // A fresh seed per point: repeated prompts would hit the server's prefix cache.
    cfg.seed += i;
    Workload w = make_workload(a, cfg.num_requests, i == 0 ? warmup : 0, cfg.seed);
    cfg.requests = std::move(w.requests);
    cfg.warmup_requests = std::move(w.warmup);
    const auto result = bench::run_benchmark(cfg);
    const std::string name = (by_rate ? "rate-" : "concurrency-") +
                             (std::isinf(values[i]) ? std::string("inf") : fmt(values[i], "%g"));
    const std::string file = (fs::path(dir) / (label + "-" + name + ".json")).string();
    json j = bench::result_json(cfg, result, w.config);
    write_json(file, j);
    if (!a.flag("quiet"))
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
  if (a.flag("plot")) {
    plot(a, "sweep", sweep_file, fs::path(sweep_file).replace_extension(".png").string());
    const auto& last = sweep["points"].back()["file"].get<std::string>();
    plot(a, "run", (fs::path(dir) / last).string(),
         (fs::path(dir) / (label + "-latency.png")).string());
  }
  return 0;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  Args a(argv, kOptions, kFlags);
  const auto& pos = a.positionals();
  const bool sweep = pos.size() == 1 && pos[0] == "sweep";
  if (!pos.empty() && !sweep)
    fail(ErrorCode::kInvalidArgument, "bench: unexpected argument '", pos.front(),
         "' (the only subcommand is `sweep`)");
  return sweep ? run_sweep(a) : run_once(a);
}
#endif

}  // namespace tessera::cli
