// The listener and the io thread pool. Shutdown order matters: the io threads stop first, then the
// output bridge closes (engine callbacks stop posting), then every live session aborts its engine
// requests and closes, and only then does the io_context go away.
#include "tessera/server/http_server.h"

#include <future>
#include <optional>
#include <thread>

#include "tessera/core/log.h"
#include "tessera/server/session.h"

namespace tessera::server {

struct HttpServer::Impl {
  Impl(engine::EngineInterface& engine, HttpServerConfig cfg)
      : ctx(engine, std::move(cfg)), ioc(std::in_place, std::max(1, ctx.cfg.threads)) {}

  void do_accept() {
    acceptor->async_accept(net::make_strand(*ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
        // Out of descriptors and the like: keep serving the connections we have.
        TESSERA_LOG_WARN("accept failed: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(s), ctx)->start();
      }
      do_accept();
    });
  }

  ServerContext ctx;
  std::optional<net::io_context> ioc;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  int port = 0;
  bool started = false;
  bool stopped = false;
};

HttpServer::HttpServer(engine::EngineInterface& engine, HttpServerConfig cfg)
    : impl_(std::make_unique<Impl>(engine, std::move(cfg))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  Impl& m = *impl_;
  if (m.started) fail(ErrorCode::kInvalidArgument, "HttpServer::start called twice");
  const std::string where = m.ctx.cfg.host + ":" + std::to_string(m.ctx.cfg.port);
  if (m.ctx.cfg.port < 0 || m.ctx.cfg.port > 65535) {
    fail(ErrorCode::kInvalidArgument, "cannot listen on ", where, ": bad port");
  }
  try {
    tcp::resolver resolver(*m.ioc);
    const auto results =
        resolver.resolve(m.ctx.cfg.host, std::to_string(m.ctx.cfg.port), tcp::resolver::passive);
    const tcp::endpoint ep = results.begin()->endpoint();
    m.acceptor.emplace(net::make_strand(*m.ioc));
    m.acceptor->open(ep.protocol());
    m.acceptor->set_option(net::socket_base::reuse_address(true));
    m.acceptor->bind(ep);
    m.acceptor->listen(net::socket_base::max_listen_connections);
    m.port = m.acceptor->local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    m.acceptor.reset();
    fail(ErrorCode::kInvalidArgument, "cannot listen on ", where, ": ", e.code().message());
  }
  m.started = true;
  m.do_accept();
  for (int i = 0; i < std::max(1, m.ctx.cfg.threads); ++i) {
    m.threads.emplace_back([&m] {
      for (;;) {
        try {
          m.ioc->run();
          return;
        } catch (const std::exception& e) {
          // A handler threw: log it and keep the thread serving the other connections.
          TESSERA_LOG_ERROR("io thread: unhandled exception: {}", e.what());
        }
      }
    });
  }
  TESSERA_LOG_INFO("serving {} on {}://{}:{} ({} io threads)", m.ctx.model_name,
                   m.ctx.tls ? "https" : "http", m.ctx.cfg.host, m.port, m.threads.size());
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::stop_accepting() {
  Impl& m = *impl_;
  if (!m.acceptor || m.stopped) return;
  auto close = [&m] {
    beast::error_code ec;
    m.acceptor->close(ec);
  };
  if (m.threads.empty()) return close();
  // The acceptor belongs to its strand: close it there and wait.
  std::promise<void> done;
  net::post(m.acceptor->get_executor(), [&] {
    close();
    done.set_value();
  });
  done.get_future().wait();
}

void HttpServer::stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.ioc->stop();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
  m.ctx.stop_request_threads();
  m.ctx.bridge->close();
  for (auto& s : m.ctx.live_sessions()) s->force_close();  // aborts their engine requests
  m.acceptor.reset();
  m.ioc.reset();  // destroys the handlers still queued, and with them the last sessions
  if (m.started) TESSERA_LOG_INFO("HTTP server on port {} stopped", m.port);
}

}  // namespace tessera::server
