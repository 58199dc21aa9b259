// A FakeEngine (shared with the HTTP tests) behind a GrpcServer on an ephemeral port, plus a real
// gRPC stub and a helper that reads a whole Generate/Chat stream. The server stops before the
// engine is destroyed.
#pragma once

#if defined(TESSERA_HAVE_GRPC)
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "fake_engine.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tessera/server/grpc_server.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::server::testing {

namespace pb = ::tessera::v1;

struct StreamResult {
  std::vector<pb::GenerateResponse> msgs;
  grpc::Status status;
  std::string text;          // chunks' text, concatenated
  std::vector<int32_t> ids;  // chunks' token ids, concatenated
  const pb::GenerateResponse* last() const { return msgs.empty() ? nullptr : &msgs.back(); }
};

inline StreamResult collect(grpc::ClientReaderInterface<pb::GenerateResponse>& reader) {
  StreamResult r;
  pb::GenerateResponse msg;
  while (reader.Read(&msg)) {
    if (msg.has_chunk()) {
      r.text += msg.chunk().text();
      r.ids.insert(r.ids.end(), msg.chunk().token_ids().begin(), msg.chunk().token_ids().end());
    }
    r.msgs.push_back(msg);
  }
  r.status = reader.Finish();
  return r;
}

class GrpcTest : public ::testing::Test {
 protected:
  void serve(FakeEngineOptions eo = {}, std::string api_key = "") {
    engine_ = std::make_unique<FakeEngine>(eo);
    server_ = std::make_unique<GrpcServer>(
        *engine_, GrpcServerConfig{.host = "127.0.0.1", .port = 0, .api_key = std::move(api_key)});
    server_->start();
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::TesseraService::NewStub(channel_);
  }
  void TearDown() override {
    server_.reset();
    engine_.reset();
  }

  StreamResult generate(const pb::GenerateRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = stub_->Generate(&ctx, req);
    return collect(*reader);
  }
  StreamResult chat(const pb::ChatRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = stub_->Chat(&ctx, req);
    return collect(*reader);
  }

  static pb::GenerateRequest text_request(const std::string& text, int max_tokens) {
    pb::GenerateRequest req;
    req.set_text(text);
    req.mutable_stopping()->set_max_tokens(max_tokens);
    return req;
  }

  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::TesseraService::Stub> stub_;
};

}  // namespace tessera::server::testing
#endif  // TESSERA_HAVE_GRPC
