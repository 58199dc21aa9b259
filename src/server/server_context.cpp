#include "tessera/server/server_context.h"

#include <cstdio>
#include <random>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/server/session.h"

namespace tessera::server {
namespace {

std::unique_ptr<tokenizer::ChatTemplate> load_template(const tokenizer::Tokenizer& tok) {
  if (tok.chat_template().empty()) return nullptr;
  try {
    return std::make_unique<tokenizer::ChatTemplate>(tok.chat_template(), tok.bos_token(),
                                                     tok.eos_token());
  } catch (const Error& e) {
    // The completions route still works without one; chat requests get a 400 naming this.
    TESSERA_LOG_WARN("the model's chat template does not parse: {}", e.what());
    return nullptr;
  }
}

std::unique_ptr<net::ssl::context> make_tls_context(const TlsCredentials& t) {
  if (!t.enabled()) return nullptr;
  auto c = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  c->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                 net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                 net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  // load_tls_credentials refused encrypted keys: never ask for a passphrase.
  c->set_password_callback([](size_t, net::ssl::context::password_purpose) { return ""; });
  try {
    c->use_certificate_chain(net::buffer(t.cert_chain_pem));
    c->use_private_key(net::buffer(t.private_key_pem), net::ssl::context::pem);
  } catch (const boost::system::system_error& e) {
    fail(ErrorCode::kInvalidArgument, "TLS certificate ", t.cert_file, " / key ", t.key_file, ": ",
         e.code().message());
  }
  return c;
}

}  // namespace

ServerContext::ServerContext(engine::EngineInterface& e, HttpServerConfig c)
    : engine(e),
      cfg(std::move(c)),
      model_name(cfg.served_model_name.empty() ? e.model_info().id : cfg.served_model_name),
      created(std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count()),
      tls(make_tls_context(cfg.tls)),
      chat_template_(load_template(e.tokenizer())),
      request_pool_(size_t(std::max(1, cfg.request_threads))) {
  std::random_device rd;
  char salt[16];
  std::snprintf(salt, sizeof salt, "%08x", unsigned(rd()));
  id_salt_ = salt;
}

ParseContext ServerContext::parse_context() const {
  engine::ModelInfo model = engine.model_info();
  model.id = model_name;  // the name this server answers to (--served-model-name)
  return ParseContext{.tok = engine.tokenizer(),
                      .chat_template = chat_template_.get(),
                      .model = std::move(model),
                      .limits = cfg.limits};
}

std::string ServerContext::new_id(std::string_view prefix) {
  char num[24];
  std::snprintf(num, sizeof num, "%010llx",
                static_cast<unsigned long long>(next_id_.fetch_add(1) + 1));
  return std::string(prefix) + id_salt_ + num;
}

void ServerContext::record(const std::string& method, const std::string& target,
                           const std::string& route, int status, double seconds,
                           const std::string& cause) {
  const std::string code = std::to_string(status);
  http_metrics.counter_add("tessera_http_requests_total", "HTTP requests by route and status", 1.0,
                           {{"route", route}, {"status", code}});
  http_metrics.histogram_observe("tessera_http_request_duration_seconds",
                                 "HTTP request handling time (streams: until the last event)",
                                 {0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120}, seconds,
                                 {{"route", route}});
  TESSERA_LOG_INFO("{} {} {} {:.1f}ms", method, target, status, seconds * 1e3);
  if (!cause.empty()) {
    if (status >= 500 || status < 400) {  // < 400: a stream that failed after its 200 head
      TESSERA_LOG_ERROR("{} {} -> {}: {}", method, target, status, cause);
    } else {
      TESSERA_LOG_WARN("{} {} -> {}: {}", method, target, status, cause);
    }
  }
}

void ServerContext::offload(const std::shared_ptr<Session>& session,
                            std::function<Continuation()> work) {
  if (pending_requests_.fetch_add(1) >= cfg.max_pending_requests) {
    pending_requests_.fetch_sub(1);
    ApiError e(503, "the server is overloaded: " + std::to_string(cfg.max_pending_requests) +
                        " requests are waiting to be parsed; retry later");
    e.headers.emplace_back("Retry-After", "1");
    throw e;
  }
  net::post(request_pool_, [this, session, work = std::move(work)] {
    pending_requests_.fetch_sub(1);
    Continuation then;
    try {
      then = work();
    } catch (const ApiError& e) {
      then = [e](Session& s) { throw e; };
    } catch (const std::exception& e) {
      then = [msg = std::string("internal error: ") + e.what()](Session&) {
        throw ApiError(500, msg);
      };
    }
    bridge->post(session->strand(), [session, then = std::move(then)] {
      if (session->closed()) return;  // the client left while its body was being parsed
      try {
        then(*session);
      } catch (const ApiError& e) {
        session->send_response(error_response(e));
      } catch (const std::exception& e) {
        session->send_response(
            error_response(ApiError(500, std::string("internal error: ") + e.what())));
      }
    });
  });
}

void ServerContext::stop_request_threads() {
  request_pool_.stop();
  request_pool_.join();
}

void ServerContext::add_session(const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  sessions_[s.get()] = s;
}

void ServerContext::remove_session(const Session* s) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  sessions_.erase(s);
}

std::vector<std::shared_ptr<Session>> ServerContext::live_sessions() {
  std::vector<std::weak_ptr<Session>> weak;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    for (const auto& [ptr, w] : sessions_) weak.push_back(w);
  }
  std::vector<std::shared_ptr<Session>> out;
  for (auto& w : weak) {
    if (auto s = w.lock()) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tessera::server
