// Session: one HTTP/1.1 connection (internal to the server module). It reads requests with a
// body limit, hands each to the router, and writes responses or an SSE stream through a bounded
// write queue. All members run on the connection's strand; the session owns its socket and the
// generation job in flight, which aborts its engine requests when the client goes away. On a TLS
// server it first runs the handshake and then reads and writes through the TLS stream.
#pragma once

#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tessera/server/api_error.h"
#include "tessera/server/server_context.h"

namespace tessera::server {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;
  std::string cause;  // logged for errors
};
Response json_response(int status, const nlohmann::ordered_json& body);
Response error_response(const ApiError& e);

class GenerationJob;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ServerContext& ctx);
  ~Session();
  void start();

  Strand strand();
  bool closed() const { return closed_; }  // strand only
  bool http11() const { return version_ == 11; }
  void set_route(std::string route) { route_ = std::move(route); }

  // Strand only. A complete response; then the next request (keep-alive) or close.
  void send_response(Response r);
  // Strand only. An SSE stream: the head, events (false: the client fell more than
  // stream_buffer_bytes behind), then the end.
  void stream_begin();
  bool stream_write(const std::string& event);
  void stream_end(const std::string& cause);
  // Strand only. Makes `job` the request in flight and watches for the client leaving.
  void attach_job(std::shared_ptr<GenerationJob> job);
  // Strand only: the client is gone or too slow; aborts the job and closes the connection.
  void drop_client(const std::string& why);
  // From HttpServer::stop() once the io threads are joined.
  void force_close();

 private:
  enum class After { kNothing, kRead, kClose };
  // Calls fn(stream) with the TLS stream when there is one, else the TCP stream.
  template <class Fn>
  void with_stream(Fn&& fn) {
    if (tls_) {
      fn(*tls_);
    } else {
      fn(stream_);
    }
  }
  void on_handshake(beast::error_code ec);
  void do_read();
  void on_header(beast::error_code ec);
  void on_read(beast::error_code ec);
  void on_read_error(beast::error_code ec);
  void queue(std::string data);
  void write_more();
  void on_write(beast::error_code ec);
  void arm_watch();
  void on_watch(beast::error_code ec, const std::weak_ptr<GenerationJob>& job);
  void recheck_later(const std::weak_ptr<GenerationJob>& job);
  void finish_request(int status, const std::string& cause);
  void close();

  ServerContext& ctx_;
  beast::tcp_stream stream_;
  std::optional<net::ssl::stream<beast::tcp_stream&>> tls_;  // over stream_, on a TLS server
  net::steady_timer watch_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;

  std::deque<std::string> pending_;
  std::vector<std::string> inflight_;
  std::string joined_;       // TLS: the in-flight strings as one buffer (one record, not one each)
  size_t queued_bytes_ = 0;  // pending + in flight
  bool writing_ = false;
  After after_ = After::kNothing;
  bool closed_ = false;

  // The request being served.
  std::string method_, target_, route_ = "other";
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool in_request_ = false;
  std::chrono::steady_clock::time_point start_;
  std::shared_ptr<GenerationJob> job_;
};

// Routes one request (routes.cpp): answers through the session or starts a generation job.
void handle_request(Session& session, ServerContext& ctx, http::request<http::string_body>&& req);

}  // namespace tessera::server
