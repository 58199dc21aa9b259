// gRPC front end (server module): serves tessera.v1.TesseraService (Generate, Chat, Abort,
// Tokenize, GetModelInfo, GetServerInfo; see proto/tessera/v1/) and grpc.health.v1.Health on
// gRPC's callback API. A GrpcServer owns the grpc::Server, its services and the registry of live
// streams; the engine is borrowed and must outlive it. Without gRPC at build time
// (TESSERA_HAVE_GRPC unset) the class still exists and start() throws kUnsupported.
#pragma once

#include <memory>
#include <string>

#include "tessera/engine/engine.h"
#include "tessera/server/openai_request.h"
#include "tessera/server/tls.h"

namespace tessera::server {

struct GrpcServerConfig {
  std::string host = "0.0.0.0";
  int port = 0;         // 0: an ephemeral port (see GrpcServer::port())
  std::string api_key;  // non-empty: calls need metadata `authorization: Bearer <key>`
  int max_message_bytes = 64 << 20;
  RequestLimits limits;  // give it the HttpServerConfig's, so both front ends refuse alike
  // Enabled (load_tls_credentials): the port speaks only TLS (grpc::SslServerCredentials, no
  // client certificates); clients use grpc.ssl_channel_credentials with the CA.
  TlsCredentials tls;
};

class GrpcServer {
 public:
  GrpcServer(engine::EngineInterface& engine, GrpcServerConfig config);
  ~GrpcServer();  // stop()s
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds and starts serving on gRPC's threads; returns at once. Throws tessera::Error
  // (kInternal) when the address cannot be bound, kUnsupported when built without gRPC.
  void start();
  int port() const;  // the bound port, after start()
  // Aborts the running streams, gives calls up to `grace_seconds` to end, then cancels the rest
  // and waits for their handlers. Idempotent.
  void stop(double grace_seconds = 2.0);

  static bool available();  // built with gRPC

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::server
