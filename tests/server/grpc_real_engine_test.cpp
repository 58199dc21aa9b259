// A C++ gRPC client against the real engine on the default model: greedy Generate over gRPC
// gives exactly what the engine gives directly, concurrent streams all complete, and Abort stops a
// long generation and frees its KV blocks.
#if defined(TESSERA_HAVE_GRPC)
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "grpc_test_fixture.h"
#include "tessera/engine/llm_engine.h"

namespace tessera::server::testing {
namespace {

std::string model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

class GrpcRealEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(model_path())) GTEST_SKIP() << "default model not downloaded";
    engine_ = std::make_unique<engine::LlmEngine>(engine::EngineConfig{
        .model_path = model_path(), .served_model_name = "smol", .kv_cache_bytes = size_t{64} << 20});
    engine_->start();
    server_ = std::make_unique<GrpcServer>(*engine_, GrpcServerConfig{.host = "127.0.0.1", .port = 0});
    server_->start();
    stub_ = pb::TesseraService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_.reset();
    engine_.reset();
  }
  pb::GenerateRequest greedy(const std::string& text, int max_tokens) {
    pb::GenerateRequest req;
    req.set_text(text);
    req.mutable_sampling()->set_temperature(0.0f);
    req.mutable_stopping()->set_max_tokens(max_tokens);
    req.mutable_stopping()->set_ignore_eos(true);
    return req;
  }
  StreamResult generate(const pb::GenerateRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto reader = stub_->Generate(&ctx, req);
    return collect(*reader);
  }
  std::unique_ptr<engine::LlmEngine> engine_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::TesseraService::Stub> stub_;
};

TEST_F(GrpcRealEngine, GreedyMatchesTheEngineAndConcurrentStreamsComplete) {
  // Directly through the engine.
  protocol::GenerationRequest direct;
  direct.request_id = "direct";
  direct.prompt_ids = engine_->tokenizer().encode("The capital of France is");
  direct.sampling.temperature = 0.0f;
  direct.stopping = {.max_tokens = 10, .ignore_eos = true};
  std::promise<std::vector<int32_t>> done;
  auto ids = std::make_shared<std::vector<int32_t>>();
  engine_->submit(engine_->validate(direct), [&done, ids](const protocol::RequestOutput& o) {
    ids->insert(ids->end(), o.new_token_ids.begin(), o.new_token_ids.end());
    if (o.finished()) done.set_value(*ids);
  });
  const auto expected = done.get_future().get();

  std::vector<std::future<StreamResult>> streams;
  for (int i = 0; i < 8; ++i)
    streams.push_back(std::async(std::launch::async, [&] { return generate(greedy("The capital of France is", 10)); }));
  for (auto& f : streams) {
    StreamResult r = f.get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, expected);
    ASSERT_TRUE(r.last() && r.last()->has_complete());
    EXPECT_EQ(r.last()->complete().usage().completion_tokens(), 10);
  }
}

TEST_F(GrpcRealEngine, AbortStopsALongGenerationAndFreesItsBlocks) {
  auto req = greedy("Write a long story.", 1000);  // fits the 64 MiB cache (~1400 tokens)
  req.set_request_id("long-one");
  auto fut = std::async(std::launch::async, [&] { return generate(req); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  grpc::ClientContext ctx;
  pb::AbortRequest abort;
  abort.add_request_ids("long-one");
  pb::AbortResponse resp;
  ASSERT_TRUE(stub_->Abort(&ctx, abort, &resp).ok());
  StreamResult r = fut.get();
  ASSERT_TRUE(r.last() && r.last()->has_complete());
  EXPECT_EQ(r.last()->complete().finish_reason(), pb::FINISH_REASON_ABORT);
  EXPECT_LT(r.ids.size(), 1000u);
  for (int i = 0; i < 100 && engine_->metrics().value("tessera:kv_cache_usage_perc") > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(engine_->metrics().value("tessera:kv_cache_usage_perc"), 0.0);
}

}  // namespace
}  // namespace tessera::server::testing
#endif  // TESSERA_HAVE_GRPC
