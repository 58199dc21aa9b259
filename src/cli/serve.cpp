// `tessera serve`: the engine and the OpenAI-compatible HTTP front end in one process (the worker
// group of the parallelism issue will put workers in processes of their own). SIGTERM/SIGINT:
// stop accepting, drain running requests up to --drain-timeout, stop, exit 0.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <omp.h>

#include "args.h"
#include "commands.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/engine/llm_engine.h"

#if TESSERA_HAVE_HTTP
#include "tessera/server/http_server.h"
#endif

namespace tessera::cli {

int cmd_serve(const std::vector<std::string>& argv) {
#if !TESSERA_HAVE_HTTP
  fail(ErrorCode::kUnsupported, "this build has no HTTP server (TESSERA_SERVER=OFF)");
#else
  Args a(argv,
         {"model", "host", "http-port", "api-key", "served-model-name", "max-num-seqs",
          "max-num-batched-tokens", "max-waiting", "kv-cache-mb", "block-size", "threads",
          "drain-timeout", "io-threads"},
         {"no-prefix-caching"});
  const std::string model_arg = a.get_or("model", default_model().name);
  const std::string path = resolve_model_path(model_arg);
  if (const int t = a.get_int("threads", 0); t > 0) omp_set_num_threads(t);
  engine::EngineConfig ec{
      .model_path = path,
      .served_model_name = a.get_or("served-model-name", find_known_model(model_arg) ? model_arg : path),
      .limits = {.max_num_seqs = a.get_int("max-num-seqs", 64),
                 .max_num_batched_tokens = a.get_int("max-num-batched-tokens", 2048),
                 .max_waiting = a.get_int("max-waiting", 1024)},
      .block_size = a.get_int("block-size", 16),
      .kv_cache_bytes = static_cast<size_t>(a.get_int("kv-cache-mb", 512)) << 20,
      .enable_prefix_caching = !a.flag("no-prefix-caching")};

  // Block the signals before any thread starts so that only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TESSERA_LOG_INFO("loading {}", path);
  engine::LlmEngine engine(ec);
  engine.start();
  server::HttpServer http(engine, {.host = a.get_or("host", "127.0.0.1"),
                                   .port = a.get_int("http-port", 8000),
                                   .api_key = a.get_or("api-key", ""),
                                   .threads = a.get_int("io-threads", 2),
                                   .served_model_name = ec.served_model_name});
  http.start();
  TESSERA_LOG_INFO("serving {} on http://{}:{} ({} KV blocks of {} tokens)", ec.served_model_name,
                   a.get_or("host", "127.0.0.1"), http.port(), engine.model_info().num_blocks,
                   engine.model_info().block_size);
  std::printf("READY http://%s:%d\n", a.get_or("host", "127.0.0.1").c_str(), http.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  TESSERA_LOG_INFO("signal {}: draining", sig);
  http.stop_accepting();
  engine.shutdown(a.get_double("drain-timeout", 30.0));
  http.stop();
  TESSERA_LOG_INFO("stopped");
  return 0;
#endif
}

}  // namespace tessera::cli
