// `tessera serve`: the engine and the OpenAI-compatible HTTP front end in one process (the worker
// group of the parallelism issue will put workers in processes of their own). SIGTERM/SIGINT:
// stop accepting, drain running requests up to --drain-timeout, stop, exit 0.
#include <omp.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "commands.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/core/progress.h"
#include "tessera/engine/llm_engine.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/tokenizer/chat_template.h"
#include "topology_launch.h"

#if TESSERA_HAVE_HTTP
#include "tessera/server/grpc_server.h"
#include "tessera/server/http_server.h"
#endif

namespace tessera::cli {
namespace {

// One short chat generation before the listeners open: it proves the model answers (the answer
// is logged) and touches every weight page once, so the first client does not pay for it.
[[maybe_unused]] void warm_up(engine::EngineInterface& engine) {
  const auto& tok = engine.tokenizer();
  const std::string question = "What is the capital of France? Answer in one sentence.";
  std::string prompt = question;
  if (!tok.chat_template().empty()) {
    tokenizer::ChatTemplate tmpl(tok.chat_template(), tok.bos_token(), tok.eos_token());
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    msgs.push_back({{"role", "user"}, {"content", question}});
    prompt = tmpl.render(msgs, nullptr, /*add_generation_prompt=*/true);
  }
  protocol::GenerationRequest req;
  req.request_id = "warmup";
  req.prompt_ids = tok.encode(prompt, {.add_special = false, .parse_special = true});
  req.sampling.temperature = 0.0f;
  req.stopping.max_tokens = 32;
  auto done = std::make_shared<std::promise<void>>();
  auto text = std::make_shared<std::string>();
  // The reporter outlives the request: the callback runs on the engine's thread until finished.
  auto progress = std::make_shared<ProgressReporter>(
      "warm-up (tokens)", static_cast<uint64_t>(req.stopping.max_tokens), ProgressUnit::kItems,
      progress_style_for_stderr());
  engine.submit(engine.validate(req), [done, text, progress](const protocol::RequestOutput& o) {
    *text += o.new_text;
    progress->update(static_cast<uint64_t>(o.completion_tokens));
    if (o.finished()) done->set_value();
  });
  done->get_future().wait();
  progress->finish();
  TESSERA_LOG_INFO("warm-up: {} -> {}", question, *text);
  std::printf("warm-up: %s\n%s\n", question.c_str(), text->c_str());
}

#if TESSERA_HAVE_HTTP
// --tls-cert / --tls-key (or listen.tls_cert / listen.tls_key): both or neither.
server::TlsCredentials load_tls(const std::string& cert, const std::string& key) {
  if (cert.empty() && key.empty()) return {};
  if (key.empty()) {
    fail(ErrorCode::kInvalidArgument, "--tls-cert ", cert,
         " needs --tls-key (or listen.tls_key in the config): the certificate's private key");
  }
  if (cert.empty()) {
    fail(ErrorCode::kInvalidArgument, "--tls-key ", key,
         " needs --tls-cert (or listen.tls_cert in the config): the certificate chain");
  }
  return server::load_tls_credentials(cert, key);
}
#endif

#if TESSERA_HAVE_HTTP
struct ServeOpts {
  std::string model = default_model().name, served_model_name, backend = "cpu", config,
              activations = "int8", tp_overlap = "off", sequence_parallel = "off",
              decode_graphs = "auto";
  // The topology key's default, so a flag left out and a key left out mean the same.
  std::string kv_cache_dtype = config::SchedulerSpec{}.kv_cache_dtype;
  // Listeners: defaults from config::ListenSpec, the topology's `listen:` section.
  std::string host = config::ListenSpec{}.host, api_key, tls_cert, tls_key;
  int http_port = config::ListenSpec{}.http_port, grpc_port = config::ListenSpec{}.grpc_port;
  int max_num_seqs = 64, max_num_batched_tokens = 2048, max_waiting = 1024, kv_cache_mb = 512,
      block_size = 16, threads = 0, io_threads = 2, request_threads = 2, node_rank = 0;
  int max_n = server::RequestLimits{}.max_n, max_request_tokens = 0;
  double drain_timeout = 30.0;
  bool no_prefix_caching = false, no_warmup = false, in_process_worker = false,
       parse_special_in_user_content = false, metrics_without_api_key = false;
  NamedOptions options;  // by flag name: was it given?
  bool given(const std::string& name) const { return options.given(name); }
};

// The value of a flag that has a topology counterpart: the flag when given, else the file's.
template <class T>
T pick(const ServeOpts& o, const std::string& flag, const T& flag_value, const T& file_value) {
  return o.given(flag) ? flag_value : file_value;
}

int run_serve(const ServeOpts& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);

  // Block the signals before any thread starts so that only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // With a topology file: the worker group it describes (node 0 serves, other nodes run ranks).
  // One precedence rule: a flag given on the command line wins over the file, the file over the
  // flag's default.
  std::optional<Launch> launch;
  if (o.given("config")) {
    launch = launch_from_config(o.config, o.node_rank);
    engine::EngineConfig& e = launch->engine;
    e.served_model_name = pick(o, "served-model-name", o.served_model_name, e.served_model_name);
    e.limits.max_num_seqs = pick(o, "max-num-seqs", o.max_num_seqs, e.limits.max_num_seqs);
    e.limits.max_num_batched_tokens = pick(o, "max-num-batched-tokens", o.max_num_batched_tokens,
                                           e.limits.max_num_batched_tokens);
    e.limits.max_waiting = pick(o, "max-waiting", o.max_waiting, e.limits.max_waiting);
    e.block_size = pick(o, "block-size", o.block_size, e.block_size);
    e.kv_cache_bytes = pick(o, "kv-cache-mb", size_t(o.kv_cache_mb) << 20, e.kv_cache_bytes);
    if (o.given("kv-cache-dtype")) e.kv_cache_dtype = kv_cache::parse_kv_dtype(o.kv_cache_dtype);
    if (o.given("decode-graphs")) e.graph_mode = worker::parse_graph_mode(o.decode_graphs);
    if (o.no_prefix_caching) e.enable_prefix_caching = false;
    if (o.given("activations")) e.cpu_activations = ops::cpu::parse_activations(o.activations);
    if (o.given("tp-overlap")) e.tp_overlap = o.tp_overlap == "on";
    if (o.given("sequence-parallel")) e.sequence_parallel = o.sequence_parallel == "on";
    if (o.node_rank > 0) return run_worker_node(*launch, o.node_rank);
  }
  const std::string path = launch ? launch->engine.model_path : resolve_or_pull_model(o.model);
  const config::ListenSpec listen = launch ? launch->topo.listen : config::ListenSpec{};
  const engine::EngineConfig ec =
      launch
          ? launch->engine
          : engine::EngineConfig{
                .model_path = path,
                .served_model_name = o.given("served-model-name") ? o.served_model_name
                                     : find_known_model(o.model)  ? o.model
                                                                  : path,
                .limits = {.max_num_seqs = o.max_num_seqs,
                           .max_num_batched_tokens = o.max_num_batched_tokens,
                           .max_waiting = o.max_waiting},
                .block_size = o.block_size,
                .kv_cache_bytes = static_cast<size_t>(o.kv_cache_mb) << 20,
                .kv_cache_dtype = kv_cache::parse_kv_dtype(o.kv_cache_dtype),
                .enable_prefix_caching = !o.no_prefix_caching,
                .device = {parse_device_type(o.backend), 0},
                .cpu_activations = ops::cpu::parse_activations(o.activations),
                .graph_mode = worker::parse_graph_mode(o.decode_graphs),
                // The worker runs in its own process (`tessera worker`) unless asked otherwise.
                .worker_executable =
                    o.in_process_worker ? std::string()
                                        : std::filesystem::read_symlink("/proc/self/exe").string()};
  const std::string host = pick(o, "host", o.host, listen.host);
  const int http_port = pick(o, "http-port", o.http_port, listen.http_port);
  const std::string api_key = pick(o, "api-key", o.api_key, listen.api_key);
  const int grpc_port = pick(o, "grpc-port", o.grpc_port, listen.grpc_port);
  // TLS for both ports, read and checked before the model loads so that a bad file fails fast.
  const server::TlsCredentials tls = load_tls(pick(o, "tls-cert", o.tls_cert, listen.tls_cert),
                                              pick(o, "tls-key", o.tls_key, listen.tls_key));
  const char* scheme = tls.enabled() ? "https" : "http";

  TESSERA_LOG_INFO("loading {}", path);
  engine::LlmEngine engine(ec);
  engine.start();
  if (!o.no_warmup) warm_up(engine);
  // One set of request limits for both front ends.
  server::RequestLimits limits;
  limits.max_n = o.max_n;
  limits.max_request_tokens = o.max_request_tokens;
  limits.user_special_tokens_as_text = !o.parse_special_in_user_content;
  server::HttpServer http(engine, {.host = host,
                                   .port = http_port,
                                   .api_key = api_key,
                                   .metrics_without_api_key = o.metrics_without_api_key,
                                   .limits = limits,
                                   .threads = o.io_threads,
                                   .request_threads = o.request_threads,
                                   .served_model_name = ec.served_model_name,
                                   .tls = tls});
  http.start();
  // gRPC is opt-in (--grpc-port N, 0 = any free port), as in vLLM.
  std::unique_ptr<server::GrpcServer> grpc;
  if (grpc_port >= 0) {
    grpc = std::make_unique<server::GrpcServer>(
        engine,
        server::GrpcServerConfig{
            .host = host, .port = grpc_port, .api_key = api_key, .limits = limits, .tls = tls});
    grpc->start();
    TESSERA_LOG_INFO("gRPC{} on {}:{}", tls.enabled() ? " (TLS)" : "", host, grpc->port());
    std::printf("GRPC %s:%d\n", host.c_str(), grpc->port());
  }
  TESSERA_LOG_INFO("serving {} on {}://{}:{} ({} KV blocks of {} tokens)", ec.served_model_name,
                   scheme, host, http.port(), engine.model_info().num_blocks,
                   engine.model_info().block_size);
  std::printf("READY %s://%s:%d\n", scheme, host.c_str(), http.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  TESSERA_LOG_INFO("signal {}: draining", sig);
  http.stop_accepting();
  engine.shutdown(o.drain_timeout);
  if (grpc) grpc->stop();
  http.stop();
  TESSERA_LOG_INFO("stopped");
  return 0;
}
#endif

}  // namespace

Command add_serve(CLI::App& root) {
  CLI::App* c = root.add_subcommand(
      "serve", "the OpenAI-compatible HTTP (and gRPC) server; the worker in its own process");
#if !TESSERA_HAVE_HTTP
  return {c, []() -> int {
            fail(ErrorCode::kUnsupported, "this build has no HTTP server (TESSERA_SERVER=OFF)");
          }};
#else
  auto o = std::make_shared<ServeOpts>();
  NamedOptions& opts = o->options;
  opts.attach(c);
  const CLI::Range port(0, 65535), positive(1, 1 << 30);
  opts.add("model", o->model, "a GGUF file, a Hugging Face directory or a known model name");
  opts.add("config", o->config, "a topology YAML (configs/): serve its worker group");
  opts.add("node-rank", o->node_rank,
           "with --config: this node's index (0 serves, others run ranks)")
      ->check(CLI::NonNegativeNumber);
  opts.add("host", o->host, "bind address [topology: listen.host]");
  opts.add("http-port", o->http_port, "HTTP port (0: any free port) [topology: listen.http_port]")
      ->check(port);
  opts.add("grpc-port", o->grpc_port,
           "gRPC port (0: any free port, -1: no gRPC) [topology: listen.grpc_port]")
      ->check(CLI::Range(-1, 65535));
  opts.add("api-key", o->api_key, "require Authorization: Bearer KEY [topology: listen.api_key]");
  opts.add("tls-cert", o->tls_cert,
           "PEM certificate chain: HTTPS and gRPC over TLS "
           "[topology: listen.tls_cert]");
  opts.add("tls-key", o->tls_key, "PEM private key of --tls-cert [topology: listen.tls_key]");
  opts.add("served-model-name", o->served_model_name,
           "the model name clients use (default: the known name, or the path) [topology: "
           "model.served_name]");
  opts.add("max-num-seqs", o->max_num_seqs, "sequences per step [topology: scheduler.max_num_seqs]")
      ->check(CLI::Range(1, 1 << 16));
  opts.add("max-num-batched-tokens", o->max_num_batched_tokens,
           "tokens per step [topology: scheduler.max_num_batched_tokens]")
      ->check(positive);
  opts.add("max-waiting", o->max_waiting,
           "queued requests before 429 [topology: scheduler.max_waiting]")
      ->check(positive);
  opts.add("kv-cache-mb", o->kv_cache_mb, "KV cache size in MiB [topology: scheduler.kv_cache_mb]")
      ->check(positive);
  opts.add("kv-cache-dtype", o->kv_cache_dtype,
           "KV cache element type: f16 / bf16 (values rounded to nearest even as they are "
           "stored) or f32 (exact, twice the memory per token) [topology: "
           "scheduler.kv_cache_dtype]")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  opts.add("decode-graphs", o->decode_graphs,
           "replay decode steps from CUDA graphs recorded at start for batch sizes up to "
           "max-num-seqs: auto (on a CUDA device), on, off [topology: scheduler.decode_graphs]")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  opts.add("block-size", o->block_size, "tokens per KV block [topology: scheduler.block_size]")
      ->check(CLI::Range(1, 1024));
  add_backend_option(c, o->backend);
  opts.add(
          "activations", o->activations,
          "cpu backend, Q4_0..Q8_0, Q2_K..Q6_K weights: int8 (activations quantized per 32 values, "
          "integer dot products) or fp32 (exact) [topology: cpu_activations]")
      ->check(CLI::IsMember({"int8", "fp32"}));
  opts.add("tp-overlap", o->tp_overlap,
           "with --config and tensor parallelism: on cuts each step in two micro-batches so that "
           "one "
           "half's all-reduces run while the other half computes (same results bitwise) [topology: "
           "tp_overlap]")
      ->check(CLI::IsMember({"on", "off"}));
  opts.add("sequence-parallel", o->sequence_parallel,
           "with --config and tensor parallelism: on keeps each rank's 1/T of a step's residual "
           "rows and turns every all-reduce into a reduce-scatter and an all-gather (same results "
           "bitwise; fewer bytes from TP=3 up on gloo and shm) [topology: sequence_parallel]")
      ->check(CLI::IsMember({"on", "off"}));
  opts.add("threads", o->threads, "OpenMP threads (0: all cores)")->check(CLI::NonNegativeNumber);
  opts.add("io-threads", o->io_threads, "HTTP io threads")->check(CLI::Range(1, 1024));
  opts.add("request-threads", o->request_threads, "threads that parse and tokenize request bodies")
      ->check(CLI::Range(1, 1024));
  opts.add("drain-timeout", o->drain_timeout, "seconds running requests may finish after SIGTERM")
      ->check(CLI::NonNegativeNumber);
  opts.add("max-n", o->max_n, "most choices per prompt (n)")->check(CLI::Range(1, 1 << 16));
  opts.add("max-request-tokens", o->max_request_tokens,
           "most prompt + max_tokens per request (0: 16 x the context)")
      ->check(CLI::NonNegativeNumber);
  opts.flag("no-prefix-caching", o->no_prefix_caching,
            "do not reuse cached prompt prefixes [topology: scheduler.enable_prefix_caching]");
  opts.flag("no-warmup", o->no_warmup, "skip the warm-up generation before the listeners open");
  opts.flag("in-process-worker", o->in_process_worker, "run the worker in this process");
  opts.flag("parse-special-in-user-content", o->parse_special_in_user_content,
            "let user text spell special tokens (vLLM's behaviour)");
  opts.flag("metrics-without-api-key", o->metrics_without_api_key,
            "serve /metrics without the key");
  return {c, [o] { return run_serve(*o); }};
#endif
}

}  // namespace tessera::cli
