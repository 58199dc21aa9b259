// A FakeEngine plus an HttpServer on an ephemeral port; the server stops before the engine.
#pragma once

#include <memory>

#include "fake_engine.h"
#include "tessera/server/http_server.h"
#include "test_client.h"

namespace tessera::server::testing {

struct Served {
  explicit Served(FakeEngineOptions eo = {}, HttpServerConfig cfg = {}) : engine(eo) {
    cfg.port = 0;
    server = std::make_unique<HttpServer>(engine, cfg);
    server->start();
  }
  int port() const { return server->port(); }
  FakeEngine engine;
  std::unique_ptr<HttpServer> server;
};

inline nlohmann::json chat_body(const std::string& user, int max_tokens) {
  return {{"model", "fake-model"},
          {"messages", {{{"role", "user"}, {"content", user}}}},
          {"max_tokens", max_tokens}};
}

}  // namespace tessera::server::testing
