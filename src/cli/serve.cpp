// `tessera serve`: the engine and the OpenAI-compatible HTTP front end in one process (the worker
// group of the parallelism issue will put workers in processes of their own). SIGTERM/SIGINT:
// stop accepting, drain running requests up to --drain-timeout, stop, exit 0.
#include <omp.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>

#include "args.h"
#include "commands.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/engine/llm_engine.h"
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
  engine.submit(engine.validate(req), [done, text](const protocol::RequestOutput& o) {
    *text += o.new_text;
    if (o.finished()) done->set_value();
  });
  done->get_future().wait();
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

}  // namespace

int cmd_serve(const std::vector<std::string>& argv) {
#if !TESSERA_HAVE_HTTP
  fail(ErrorCode::kUnsupported, "this build has no HTTP server (TESSERA_SERVER=OFF)");
#else
  Args a(argv,
         {"model", "host", "http-port", "api-key", "served-model-name", "max-num-seqs",
          "max-num-batched-tokens", "max-waiting", "kv-cache-mb", "block-size", "threads", "backend",
          "drain-timeout", "io-threads", "request-threads", "grpc-port", "config", "node-rank",
          "max-n", "max-request-tokens", "tls-cert", "tls-key"},
         {"no-prefix-caching", "no-warmup", "in-process-worker", "parse-special-in-user-content",
          "metrics-without-api-key"});
  const std::string model_arg = a.get_or("model", default_model().name);
  if (const int t = a.get_int("threads", 0); t > 0) omp_set_num_threads(t);

  // Block the signals before any thread starts so that only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // With a topology file: the worker group it describes (node 0 serves, other nodes run ranks).
  std::optional<Launch> launch;
  if (auto cfg = a.get("config")) {
    const int node_rank = a.get_int("node-rank", 0);
    launch = launch_from_config(*cfg, node_rank);
    if (node_rank > 0) return run_worker_node(*launch, node_rank);
  }
  const std::string path = launch ? launch->engine.model_path : resolve_model_path(model_arg);
  const config::ListenSpec listen = launch ? launch->topo.listen : config::ListenSpec{};
  engine::EngineConfig ec =
      launch ? launch->engine
             : engine::EngineConfig{
                   .model_path = path,
                   .served_model_name = a.get_or("served-model-name",
                                                 find_known_model(model_arg) ? model_arg : path),
                   .limits = {.max_num_seqs = a.get_int("max-num-seqs", 64),
                              .max_num_batched_tokens = a.get_int("max-num-batched-tokens", 2048),
                              .max_waiting = a.get_int("max-waiting", 1024)},
                   .block_size = a.get_int("block-size", 16),
                   .kv_cache_bytes = static_cast<size_t>(a.get_int("kv-cache-mb", 512)) << 20,
                   .enable_prefix_caching = !a.flag("no-prefix-caching"),
                   .device = {parse_device_type(a.get_or("backend", "cpu")), 0},
                   // The worker runs in its own process (`tessera worker`) unless asked otherwise.
                   .worker_executable =
                       a.flag("in-process-worker")
                           ? std::string()
                           : std::filesystem::read_symlink("/proc/self/exe").string()};
  // Flags given on the command line win over the file.
  const std::string host = a.get_or("host", listen.host);
  const int http_port = a.get_int("http-port", listen.http_port);
  const std::string api_key = a.get_or("api-key", listen.api_key);
  const int grpc_port = a.get("grpc-port") ? a.get_int("grpc-port", 0) : listen.grpc_port;
  // TLS for both ports, read and checked before the model loads so that a bad file fails fast.
  const server::TlsCredentials tls =
      load_tls(a.get_or("tls-cert", listen.tls_cert), a.get_or("tls-key", listen.tls_key));
  const char* scheme = tls.enabled() ? "https" : "http";

  TESSERA_LOG_INFO("loading {}", path);
  engine::LlmEngine engine(ec);
  engine.start();
  if (!a.flag("no-warmup")) warm_up(engine);
  // One set of request limits for both front ends.
  server::RequestLimits limits;
  limits.max_n = a.get_int("max-n", limits.max_n);
  limits.max_request_tokens = a.get_int("max-request-tokens", 0);
  limits.user_special_tokens_as_text = !a.flag("parse-special-in-user-content");
  server::HttpServer http(engine, {.host = host,
                                   .port = http_port,
                                   .api_key = api_key,
                                   .metrics_without_api_key = a.flag("metrics-without-api-key"),
                                   .limits = limits,
                                   .threads = a.get_int("io-threads", 2),
                                   .request_threads = a.get_int("request-threads", 2),
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
  engine.shutdown(a.get_double("drain-timeout", 30.0));
  if (grpc) grpc->stop();
  http.stop();
  TESSERA_LOG_INFO("stopped");
  return 0;
#endif
}

}  // namespace tessera::cli
