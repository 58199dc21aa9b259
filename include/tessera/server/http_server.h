// HttpServer: the OpenAI-compatible HTTP front end (Boost.Beast/Asio). It owns its io_context, a
// small pool of io threads, the listening socket and every open connection; it borrows the engine,
// which must outlive it. Connections are asynchronous (no thread per connection): engine output
// callbacks only post to the connection's strand, so the engine thread never blocks on a client.
//
// Routes: POST /v1/chat/completions, POST /v1/completions (JSON or SSE streaming), GET /v1/models,
// GET /health, GET /ready, GET /metrics, POST /tokenize, POST /detokenize. Plain HTTP, or HTTPS
// only when the config carries TLS credentials (TLS 1.2 and 1.3).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "tessera/engine/engine.h"
#include "tessera/server/openai_request.h"
#include "tessera/server/tls.h"

namespace tessera::server {

struct HttpServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;      // 0: an ephemeral port (tests); port() tells which
  std::string api_key;  // empty: no auth; else `Authorization: Bearer <key>` on /v1/*, tokenize
  // /metrics names the model, the load and the request mix: with an api_key it needs the key too,
  // unless this is set (`--metrics-without-api-key`, for a scraper that cannot send one).
  bool metrics_without_api_key = false;
  size_t max_body_bytes = 1 << 20;
  RequestLimits limits;
  int threads = 2;  // io threads
  // Threads that parse, validate, template and tokenize request bodies, so that this CPU work
  // never runs on an io thread (where it would stall /health and every other connection).
  int request_threads = 2;
  // Bodies waiting for a request thread; beyond this a request gets 503 with Retry-After.
  int max_pending_requests = 256;
  std::string served_model_name;  // empty: engine.model_info().id
  // Bytes a streaming client may fall behind before its request is aborted and it is cut off.
  size_t stream_buffer_bytes = 4 << 20;
  // Enabled (load_tls_credentials): the port speaks only TLS (HTTPS); a plain HTTP request gets a
  // 400 in plain text saying so, and the connection closes.
  TlsCredentials tls;
};

class HttpServer {
 public:
  HttpServer(engine::EngineInterface& engine, HttpServerConfig cfg);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (throws tessera::Error naming host:port on failure) and serves on its own io threads.
  void start();
  int port() const;  // the bound port
  // Graceful shutdown, step 1: no new connections; open ones (and their streams) carry on.
  // stop_accepting() and stop() are for the owning thread, never an io thread (they wait on it).
  void stop_accepting();
  // Aborts what is still in flight in the engine, closes every connection, joins the io threads.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::server
