// One connection: read a request (body limit, Expect: 100-continue), route it, write the answer
// through a bounded queue, and watch the socket while a generation runs so that a client who
// leaves aborts its engine requests. On a TLS server the handshake comes first; a plain HTTP
// request there is answered with a plain 400 that says so.
#include "tessera/server/session.h"

#include <openssl/ssl.h>
#include <poll.h>

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/write.hpp>
#include <sstream>

#include "tessera/core/log.h"
#include "tessera/server/generation_job.h"
#include "tessera/server/sse.h"

namespace tessera::server {
namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(120);  // keep-alive wait for the next request
constexpr auto kBodyTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(60);  // one write; a stream makes many
constexpr auto kHandshakeTimeout = std::chrono::seconds(30);
// While a generation runs and unread bytes wait on its socket, how often to look for a hang-up.
constexpr auto kRecheckInterval = std::chrono::milliseconds(250);
constexpr int kClientClosedRequest = 499;  // nginx's status for a vanished client

}  // namespace

Response json_response(int status, const nlohmann::ordered_json& body) {
  Response r;
  r.status = status;
  r.body = dump_json(body) + "\n";
  return r;
}

Response error_response(const ApiError& e) {
  Response r = json_response(e.status(), error_json(e));
  r.headers = e.headers;
  r.cause = e.what();
  return r;
}

Session::Session(tcp::socket&& socket, ServerContext& ctx)
    : ctx_(ctx), stream_(std::move(socket)), watch_timer_(stream_.get_executor()) {
  if (ctx_.tls) tls_.emplace(stream_, *ctx_.tls);
}

Session::~Session() { ctx_.remove_session(this); }

Strand Session::strand() { return stream_.get_executor(); }

void Session::start() {
  ctx_.add_session(shared_from_this());
  beast::error_code ec;
  // The disconnect watcher peeks without blocking; async operations are unaffected.
  stream_.socket().non_blocking(true, ec);
  stream_.socket().set_option(tcp::no_delay(true), ec);
  if (!tls_) return do_read();
  stream_.expires_after(kHandshakeTimeout);
  tls_->async_handshake(
      net::ssl::stream_base::server,
      [self = shared_from_this()](beast::error_code e) { self->on_handshake(e); });
}

void Session::on_handshake(beast::error_code ec) {
  if (closed_) return;
  if (!ec) return do_read();
  const auto reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  if (ec.category() == net::error::get_ssl_category() &&
      (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST)) {
    // OpenSSL saw "GET ", "POST" ... where a ClientHello belongs, and sent nothing back: answer in
    // plain text (as nginx does), so that the client learns why, and close.
    tls_.reset();
    method_ = "-";
    target_ = "(plain HTTP on the HTTPS port)";
    version_ = 11;
    keep_alive_ = false;
    in_request_ = true;
    start_ = std::chrono::steady_clock::now();
    Response r = error_response(
        ApiError(400, "this port speaks HTTPS only: the request was plain HTTP; use https://"));
    r.close = true;
    return send_response(std::move(r));
  }
  TESSERA_LOG_DEBUG("TLS handshake failed: {}", ec.message());
  close();
}

void Session::do_read() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(ctx_.cfg.max_body_bytes);
  parser_->header_limit(16 * 1024);
  stream_.expires_after(kIdleTimeout);
  with_stream([&](auto& s) {
    http::async_read_header(
        s, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  });
}

void Session::on_header(beast::error_code ec) {
  if (closed_) return;
  if (ec) return on_read_error(ec);
  const auto& req = parser_->get();
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    queue("HTTP/1.1 100 Continue\r\n\r\n");
  }
  stream_.expires_after(kBodyTimeout);
  with_stream([&](auto& s) {
    http::async_read(
        s, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code e, size_t) { self->on_read(e); });
  });
}

void Session::on_read_error(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::operation_aborted || ec == beast::error::timeout ||
      ec == net::error::connection_reset || ec == net::ssl::error::stream_truncated) {
    return close();
  }
  // Answer what can be answered, then close: the rest of the input can't be trusted.
  const auto& req = parser_->get();
  method_ = std::string(req.method_string());
  target_ = std::string(req.target());
  version_ = req.version() == 10 ? 10 : 11;
  keep_alive_ = false;
  in_request_ = true;
  start_ = std::chrono::steady_clock::now();
  Response r;
  if (ec == http::error::body_limit) {
    r = error_response(ApiError(413, "the request body is larger than " +
                                         std::to_string(ctx_.cfg.max_body_bytes) + " bytes"));
  } else if (ec == http::error::header_limit) {
    r = error_response(ApiError(431, "the request headers are too large"));
  } else {
    r = error_response(ApiError(400, "malformed HTTP request: " + ec.message()));
  }
  r.close = true;
  send_response(std::move(r));
}

void Session::on_read(beast::error_code ec) {
  if (closed_) return;
  if (ec) return on_read_error(ec);
  http::request<http::string_body> req = parser_->release();
  method_ = std::string(req.method_string());
  target_ = std::string(req.target());
  version_ = req.version() == 10 ? 10 : 11;
  keep_alive_ = req.keep_alive();
  route_ = "other";
  in_request_ = true;
  start_ = std::chrono::steady_clock::now();
  stream_.expires_never();
  try {
    handle_request(*this, ctx_, std::move(req));
  } catch (const ApiError& e) {
    send_response(error_response(e));
  } catch (const std::exception& e) {
    send_response(error_response(ApiError(500, std::string("internal error: ") + e.what())));
  }
}

void Session::send_response(Response r) {
  if (closed_) return;
  http::response<http::string_body> res{static_cast<http::status>(r.status), version_};
  res.set(http::field::server, "tessera");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.body() = std::move(r.body);
  res.keep_alive(keep_alive_ && !r.close);
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  after_ = res.keep_alive() ? After::kRead : After::kClose;
  job_.reset();
  finish_request(r.status, r.cause);
  queue(os.str());
}

void Session::stream_begin() { queue(sse_response_head(http11(), keep_alive_)); }

bool Session::stream_write(const std::string& event) {
  if (closed_) return false;
  std::string framed = http11() ? http_chunk(event) : event;
  if (queued_bytes_ + framed.size() > ctx_.cfg.stream_buffer_bytes) return false;
  queue(std::move(framed));
  return true;
}

void Session::stream_end(const std::string& cause) {
  if (closed_) return;
  if (http11()) queue(http_last_chunk());
  after_ = (http11() && keep_alive_) ? After::kRead : After::kClose;
  job_.reset();
  finish_request(200, cause);
  if (!writing_) write_more();
}

void Session::attach_job(std::shared_ptr<GenerationJob> job) {
  job_ = std::move(job);
  arm_watch();
}

void Session::drop_client(const std::string& why) {
  if (closed_) return;
  if (auto job = std::move(job_)) job->abandon();
  finish_request(kClientClosedRequest, why);
  close();
}

void Session::force_close() {
  if (auto job = std::move(job_)) job->abandon();
  close();
}

void Session::queue(std::string data) {
  if (closed_) return;
  queued_bytes_ += data.size();
  pending_.push_back(std::move(data));
  if (!writing_) write_more();
}

void Session::write_more() {
  if (closed_) return;
  if (pending_.empty()) {
    writing_ = false;
    const After next = std::exchange(after_, After::kNothing);
    if (next == After::kRead) do_read();
    if (next == After::kClose) close();
    return;
  }
  writing_ = true;
  // Gather everything queued into one write: a stream's small events go out together.
  inflight_.assign(std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.end()));
  pending_.clear();
  stream_.expires_after(kWriteTimeout);
  auto done = [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); };
  if (tls_) {
    // The TLS stream writes one buffer per call: give it one.
    joined_.clear();
    for (const auto& s : inflight_) joined_ += s;
    return net::async_write(*tls_, net::buffer(joined_), std::move(done));
  }
  std::vector<net::const_buffer> bufs;
  bufs.reserve(inflight_.size());
  for (const auto& s : inflight_) bufs.emplace_back(net::buffer(s));
  net::async_write(stream_, bufs, std::move(done));
}

void Session::on_write(beast::error_code ec) {
  if (closed_) return;
  if (ec) {
    if (job_) return drop_client("write failed: " + ec.message());
    return close();
  }
  for (const auto& s : inflight_) queued_bytes_ -= s.size();
  inflight_.clear();
  write_more();
}

void Session::arm_watch() {
  std::weak_ptr<GenerationJob> job = job_;
  stream_.socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), job](beast::error_code ec) { self->on_watch(ec, job); });
}

void Session::on_watch(beast::error_code ec, const std::weak_ptr<GenerationJob>& job) {
  auto j = job.lock();
  if (ec || closed_ || !j || j != job_) return;
  char c;
  beast::error_code peek_ec;
  const size_t n = stream_.socket().receive(net::buffer(&c, 1), tcp::socket::message_peek, peek_ec);
  if (peek_ec == net::error::would_block || peek_ec == net::error::try_again) return arm_watch();
  if (peek_ec || n == 0) return drop_client("client disconnected: " + peek_ec.message());
  // Bytes wait unread: a pipelined next request (read after this response), or, on TLS, the
  // close_notify of a client that has left. A hang-up behind them shows as POLLRDHUP.
  recheck_later(job);
}

void Session::recheck_later(const std::weak_ptr<GenerationJob>& job) {
  pollfd p{.fd = stream_.socket().native_handle(), .events = POLLRDHUP, .revents = 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
    return drop_client("client disconnected");
  }
  watch_timer_.expires_after(kRecheckInterval);
  watch_timer_.async_wait([self = shared_from_this(), job](beast::error_code ec) {
    auto j = job.lock();
    if (ec || self->closed_ || !j || j != self->job_) return;
    self->recheck_later(job);
  });
}

void Session::finish_request(int status, const std::string& cause) {
  if (!in_request_) return;
  in_request_ = false;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  ctx_.record(method_, target_, route_, status, secs, cause);
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  watch_timer_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
  pending_.clear();
}

}  // namespace tessera::server
