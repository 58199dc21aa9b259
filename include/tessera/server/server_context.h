// What every connection of one HttpServer shares (internal to the server module): the borrowed
// engine, the configuration, the chat template, the server's own HTTP metrics, the bridge that
// engine callbacks post through, and the registry of live sessions used by stop(). Owned by the
// HttpServer; sessions hold a reference and never outlive it (stop() closes them first).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/metrics.h"
#include "tessera/engine/engine.h"
#include "tessera/server/http_server.h"
#include "tessera/server/openai_request.h"
#include "tessera/tokenizer/chat_template.h"

namespace tessera::server {

namespace net = boost::asio;
// A connection's strand, type-erased (what beast::tcp_stream::get_executor() returns).
using Strand = net::any_io_executor;

// Engine callbacks run on the engine thread and may arrive after the server stopped: they post
// through this bridge, which stop() closes before the io_context goes away.
class OutputBridge {
 public:
  void post(const Strand& strand, std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (open_) net::post(strand, std::move(fn));
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }

 private:
  std::mutex mu_;
  bool open_ = true;
};

class Session;

class ServerContext {
 public:
  ServerContext(engine::EngineInterface& engine, HttpServerConfig cfg);

  engine::EngineInterface& engine;
  const HttpServerConfig cfg;
  const std::string model_name;
  const int64_t created;  // unix seconds when the server came up (/v1/models)
  std::shared_ptr<OutputBridge> bridge = std::make_shared<OutputBridge>();
  MetricsRegistry http_metrics;
  // The TLS context every connection's handshake uses; null when the server speaks plain HTTP.
  std::unique_ptr<net::ssl::context> tls;

  ParseContext parse_context() const;
  std::string new_id(std::string_view prefix);  // "chatcmpl-..." unique per server
  // Counts and logs one finished HTTP request.
  void record(const std::string& method, const std::string& target, const std::string& route,
              int status, double seconds, const std::string& cause);

  // Runs `work` on the request threads (see HttpServerConfig::request_threads) and then the
  // continuation it returns on the session's strand, unless the client has gone. An ApiError
  // from either becomes the session's error response. Throws ApiError(503) when the queue is full.
  using Continuation = std::function<void(Session&)>;
  void offload(const std::shared_ptr<Session>& session, std::function<Continuation()> work);
  // From HttpServer::stop() after the io threads: drops queued work, waits for the running.
  void stop_request_threads();

  void add_session(const std::shared_ptr<Session>& s);
  void remove_session(const Session* s);
  std::vector<std::shared_ptr<Session>> live_sessions();

 private:
  std::unique_ptr<tokenizer::ChatTemplate> chat_template_;
  std::string id_salt_;
  std::atomic<uint64_t> next_id_{0};
  net::thread_pool request_pool_;
  std::atomic<int> pending_requests_{0};
  std::mutex sessions_mu_;
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions_;
};

}  // namespace tessera::server
