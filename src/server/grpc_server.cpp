// GrpcServer: builds the grpc::Server around the TesseraService and Health implementations.
#include "tessera/server/grpc_server.h"

#include "tessera/core/error.h"

#if defined(TESSERA_HAVE_GRPC)
#include <grpcpp/security/server_credentials.h>

#include <chrono>

#include "tessera/server/grpc_service.h"

namespace tessera::server {

struct GrpcServer::Impl {
  Impl(engine::EngineInterface& engine, GrpcServerConfig c)
      : config(std::move(c)), ctx(engine, config.api_key, config.limits), service(ctx), health(ctx) {}

  GrpcServerConfig config;
  rpc::GrpcContext ctx;  // outlives the server: reactors use it until OnDone
  rpc::TesseraServiceImpl service;
  rpc::HealthServiceImpl health;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

GrpcServer::GrpcServer(engine::EngineInterface& engine, GrpcServerConfig config)
    : impl_(std::make_unique<Impl>(engine, std::move(config))) {}

GrpcServer::~GrpcServer() { stop(0.5); }

bool GrpcServer::available() { return true; }

void GrpcServer::start() {
  if (impl_->server) return;
  const GrpcServerConfig& c = impl_->config;
  // IPv6 literals need brackets in a gRPC address.
  const bool v6 = c.host.find(':') != std::string::npos && c.host.front() != '[';
  const std::string addr = (v6 ? "[" + c.host + "]" : c.host) + ":" + std::to_string(c.port);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (c.tls.enabled()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({c.tls.private_key_pem, c.tls.cert_chain_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(addr, credentials, &impl_->port);
  builder.SetMaxReceiveMessageSize(c.max_message_bytes);
  builder.SetMaxSendMessageSize(c.max_message_bytes);
  builder.RegisterService(&impl_->service);
  builder.RegisterService(&impl_->health);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    impl_->server.reset();
    fail(ErrorCode::kInternal, "gRPC: cannot listen on ", addr);
  }
}

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::stop(double grace_seconds) {
  if (!impl_->server) return;
  // Ending the generations lets their streams complete (finish reason "abort") within the grace.
  for (const std::string& id : impl_->ctx.streams->ids()) impl_->ctx.engine.abort(id);
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(grace_seconds));
  impl_->server->Shutdown(deadline);
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace tessera::server

#else  // built without gRPC

namespace tessera::server {

struct GrpcServer::Impl {};

GrpcServer::GrpcServer(engine::EngineInterface&, GrpcServerConfig) {}
GrpcServer::~GrpcServer() = default;
bool GrpcServer::available() { return false; }
void GrpcServer::start() {
  fail(ErrorCode::kUnsupported,
       "this build has no gRPC (install libgrpc++-dev, "
       "protobuf-compiler-grpc and reconfigure)");
}
int GrpcServer::port() const { return 0; }
void GrpcServer::stop(double) {}

}  // namespace tessera::server
#endif
