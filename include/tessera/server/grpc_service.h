// gRPC API (server module): the tessera.v1.TesseraService and grpc.health.v1.Health
// implementations on gRPC's callback API. GrpcServer (grpc_server.h) owns one GrpcContext and the
// services; streams (one reactor per Generate/Chat call) register their request ids in the
// context's StreamRegistry for their lifetime. Only compiled with gRPC (TESSERA_HAVE_GRPC).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tessera/engine/engine.h"
#include "tessera/protocol/request.h"
#include "tessera/server/openai_request.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::server::rpc {

namespace pb = ::tessera::v1;

// Request ids of the Generate/Chat streams in flight on this server (from admission until both
// the call and the engine are done with them); thread-safe.
class StreamRegistry {
 public:
  bool add(const std::string& id);  // false if already there
  void remove(const std::string& id);
  bool contains(const std::string& id) const;
  std::vector<std::string> ids() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_set<std::string> ids_;
};

// What every handler and stream shares. Outlives all calls (GrpcServer shuts the server down
// before destroying it).
struct GrpcContext {
  GrpcContext(engine::EngineInterface& engine, std::string api_key, RequestLimits limits = {});

  engine::EngineInterface& engine;
  std::string api_key;   // empty: no auth
  RequestLimits limits;  // the same as the HTTP server's (serve passes one to both)
  // Shared with engine callbacks, which may release an id after the server is gone.
  std::shared_ptr<StreamRegistry> streams = std::make_shared<StreamRegistry>();
  std::optional<tokenizer::ChatTemplate> chat_template;  // unset: the model has none / bad one
  std::string chat_template_error;
  std::string id_prefix;  // random per server, so assigned ids do not collide across restarts
  std::atomic<uint64_t> next_id{0};

  ParseContext parse_context() const;
  std::string new_request_id() { return id_prefix + std::to_string(next_id.fetch_add(1)); }
};

// OK, or UNAUTHENTICATED when an API key is set and `authorization: Bearer <key>` is missing or
// wrong (compared in constant time).
grpc::Status check_auth(const grpc::CallbackServerContext* call, const std::string& api_key);

// Starts a generation stream for `req` (request_id assigned and registered, options validated):
// submits to the engine and writes its outputs as they come. Engine refusals become the call
// status. The reactor deletes itself when the call is done.
// `tools`: a Chat whose output is parsed for tool calls (the Complete message carries them).
struct StreamTools {
  ToolFormat format = ToolFormat::kNone;  // kNone: not parsed
  bool parallel = true;                   // parallel_tool_calls: false keeps the first call
};
grpc::ServerWriteReactor<pb::GenerateResponse>* start_stream(GrpcContext& ctx,
                                                             grpc::CallbackServerContext* call,
                                                             engine::ValidRequest req,
                                                             bool skip_text,
                                                             StreamTools tools = {});
// A stream that ends at once with `status`.
grpc::ServerWriteReactor<pb::GenerateResponse>* failed_stream(grpc::Status status);

class TesseraServiceImpl final : public pb::TesseraService::CallbackService {
 public:
  explicit TesseraServiceImpl(GrpcContext& ctx) : ctx_(ctx) {}

  grpc::ServerWriteReactor<pb::GenerateResponse>* Generate(grpc::CallbackServerContext* call,
                                                           const pb::GenerateRequest* req) override;
  grpc::ServerWriteReactor<pb::GenerateResponse>* Chat(grpc::CallbackServerContext* call,
                                                       const pb::ChatRequest* req) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* call, const pb::AbortRequest* req,
                                  pb::AbortResponse* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* call,
                                     const pb::TokenizeRequest* req,
                                     pb::TokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* call,
                                         const pb::GetModelInfoRequest* req,
                                         pb::GetModelInfoResponse* resp) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* call,
                                          const pb::GetServerInfoRequest* req,
                                          pb::GetServerInfoResponse* resp) override;

 private:
  // Common checks before a stream starts: auth, readiness, the request id.
  grpc::Status admit(grpc::CallbackServerContext* call, engine::ValidRequest& req);
  GrpcContext& ctx_;
};

// grpc.health.v1.Health: SERVING when the engine is ready and healthy, for "" and
// "tessera.v1.TesseraService"; NOT_FOUND for other services. Watch stays UNIMPLEMENTED. No auth,
// so load balancers can probe.
class HealthServiceImpl final : public ::grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthServiceImpl(GrpcContext& ctx) : ctx_(ctx) {}
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* call,
                                  const ::grpc::health::v1::HealthCheckRequest* req,
                                  ::grpc::health::v1::HealthCheckResponse* resp) override;

 private:
  GrpcContext& ctx_;
};

}  // namespace tessera::server::rpc
