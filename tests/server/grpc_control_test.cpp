// gRPC API: stopping requests (Abort RPC, client cancel, deadline, server stop), error statuses
// (validation, engine refusals, mid-stream failure) and API-key auth.
#if defined(TESSERA_HAVE_GRPC)
#include <algorithm>
#include <thread>

#include "grpc_test_fixture.h"

namespace tessera::server::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST_F(GrpcTest, AbortMidStreamEndsWithAbort) {
  serve({.step_ms = 10});
  grpc::ClientContext ctx;
  pb::GenerateRequest req = text_request("hello", 400);
  req.set_request_id("to-abort");
  auto reader = stub_->Generate(&ctx, req);
  pb::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  ASSERT_TRUE(first.has_chunk());

  grpc::ClientContext actx;
  pb::AbortRequest abort;
  abort.add_request_ids("to-abort");
  abort.add_request_ids("unknown-id");
  pb::AbortResponse aresp;
  ASSERT_TRUE(stub_->Abort(&actx, abort, &aresp).ok());
  ASSERT_EQ(aresp.aborted_size(), 1);
  EXPECT_EQ(aresp.aborted(0), "to-abort");

  const StreamResult r = collect(*reader);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_NE(r.last(), nullptr);
  ASSERT_TRUE(r.last()->has_complete());
  EXPECT_EQ(r.last()->complete().finish_reason(), pb::FINISH_REASON_ABORT);
  EXPECT_LT(r.last()->complete().usage().completion_tokens(), 100);
  EXPECT_TRUE(contains(engine_->aborted(), "to-abort"));
}

TEST_F(GrpcTest, ClientCancelAbortsInTheEngine) {
  serve({.step_ms = 5});
  grpc::ClientContext ctx;
  pb::GenerateRequest req = text_request("hello", 400);
  req.set_request_id("to-cancel");
  auto reader = stub_->Generate(&ctx, req);
  pb::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(engine_->wait_for([](size_t, size_t aborted) { return aborted >= 1; }));
  EXPECT_TRUE(contains(engine_->aborted(), "to-cancel"));
  // The engine stops well before max_tokens, and the id is released once it has.
  EXPECT_LT(engine_->submitted().size(), 2u);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int active = -1;
  while (active != 0 && std::chrono::steady_clock::now() < until) {
    grpc::ClientContext ictx;
    pb::GetServerInfoResponse info;
    ASSERT_TRUE(stub_->GetServerInfo(&ictx, {}, &info).ok());
    active = info.active_streams();
    if (active != 0) std::this_thread::sleep_for(milliseconds(2));
  }
  EXPECT_EQ(active, 0);
  EXPECT_EQ(engine_->running(), 0u);
}

TEST_F(GrpcTest, DeadlineReachesTheEngineAndAborts) {
  serve({.hold = true});  // the engine never answers: only the deadline can end the call
  grpc::ClientContext ctx;
  const auto start = system_clock::now();
  ctx.set_deadline(start + milliseconds(300));
  pb::GenerateRequest req = text_request("hello", 5);
  req.set_request_id("late");
  const StreamResult r = collect(*stub_->Generate(&ctx, req));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(r.msgs.empty());
  ASSERT_TRUE(engine_->wait_for([](size_t, size_t aborted) { return aborted >= 1; }));
  EXPECT_TRUE(contains(engine_->aborted(), "late"));
  ASSERT_EQ(engine_->submitted().size(), 1u);
  const auto deadline = engine_->submitted()[0].deadline;
  ASSERT_TRUE(deadline.has_value());
  // Submitted right after `start`, with ~300 ms left.
  const auto left = *deadline - protocol::Clock::now();
  EXPECT_LT(left, milliseconds(300));
  EXPECT_GT(left, milliseconds(-5000));
}

TEST_F(GrpcTest, InvalidArgumentsNameTheField) {
  serve();
  struct Case {
    std::function<void(pb::GenerateRequest&)> edit;
    std::string field;
  };
  const int vocab = engine_->tokenizer().vocab_size();
  const std::vector<Case> cases = {
      {[](auto& r) { r.clear_text(); }, "input"},
      {[](auto& r) {
         r.set_text("");
         r.set_add_special_tokens(false);
       },
       "input"},
      {[](auto& r) { r.mutable_sampling()->set_temperature(-1); }, "sampling.temperature"},
      {[](auto& r) { r.mutable_sampling()->set_top_p(0); }, "sampling.top_p"},
      {[](auto& r) { r.mutable_sampling()->set_min_p(1.5f); }, "sampling.min_p"},
      {[](auto& r) { r.mutable_sampling()->set_top_k(-7); }, "sampling.top_k"},
      {[](auto& r) { r.mutable_sampling()->set_presence_penalty(3); }, "sampling.presence_penalty"},
      {[&](auto& r) { (*r.mutable_sampling()->mutable_logit_bias())[vocab] = 1; },
       "sampling.logit_bias"},
      {[](auto& r) { r.mutable_stopping()->set_max_tokens(0); }, "stopping.max_tokens"},
      {[](auto& r) { r.mutable_stopping()->add_stop(""); }, "stopping.stop[0]"},
      {[](auto& r) { r.mutable_output()->set_top_logprobs(50); }, "output.top_logprobs"},
      {[&](auto& r) {
         r.mutable_tokens()->add_ids(1);
         r.mutable_tokens()->add_ids(vocab);
       },
       "tokens.ids[1]"},
      {[](auto& r) { r.set_request_id("has space"); }, "request_id"},
  };
  for (const Case& c : cases) {
    pb::GenerateRequest req = text_request("hello", 4);
    c.edit(req);
    const StreamResult r = generate(req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos)
        << c.field << " not in: " << r.status.error_message();
    EXPECT_TRUE(r.msgs.empty());
  }
  // The engine's own check (prompt + max_tokens beyond the context) maps the same way.
  EXPECT_EQ(generate(text_request("hello", 100000)).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  pb::ChatRequest chat_req;
  EXPECT_EQ(chat(chat_req).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  chat_req.add_messages()->set_content("no role");
  const StreamResult r = chat(chat_req);
  EXPECT_NE(r.status.error_message().find("messages[0].role"), std::string::npos);
  EXPECT_TRUE(engine_->submitted().empty());
}

TEST_F(GrpcTest, QueueFullIsResourceExhausted) {
  serve({.submit_error = ErrorCode::kResourceExhausted});
  const StreamResult r = generate(text_request("hello", 4));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The failed id is free again.
  grpc::ClientContext ctx;
  pb::GetServerInfoResponse info;
  ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.active_streams(), 0);
}

TEST_F(GrpcTest, EngineFailureMidStreamIsAnErrorMessage) {
  serve({.error_after = 2});
  const StreamResult r = generate(text_request("hello", 10));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.ids.size(), 2u);
  ASSERT_TRUE(r.last()->has_error());
  EXPECT_EQ(r.last()->error().code(), int(grpc::StatusCode::INTERNAL));
  EXPECT_EQ(r.last()->error().message(), "fake failure");
}

TEST_F(GrpcTest, DuplicateRunningIdIsRefused) {
  serve({.hold = true});
  grpc::ClientContext ctx;
  pb::GenerateRequest req = text_request("hello", 3);
  req.set_request_id("dup");
  auto reader = stub_->Generate(&ctx, req);
  ASSERT_TRUE(engine_->wait_for([](size_t submitted, size_t) { return submitted == 1; }));
  EXPECT_EQ(generate(req).status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  engine_->release();
  EXPECT_TRUE(collect(*reader).status.ok());
}

TEST_F(GrpcTest, StopEndsRunningStreams) {
  serve({.step_ms = 10});
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, text_request("hello", 300));
  pb::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  const auto t0 = std::chrono::steady_clock::now();
  server_->stop(1.0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  const StreamResult r = collect(*reader);
  if (r.status.ok()) {  // usually the abort finished it within the grace
    ASSERT_TRUE(r.last()->has_complete());
    EXPECT_EQ(r.last()->complete().finish_reason(), pb::FINISH_REASON_ABORT);
  }
  EXPECT_EQ(engine_->aborted().size(), 1u);
}

TEST_F(GrpcTest, ApiKeyIsRequired) {
  serve({}, "s3cret-key");
  const auto tokenize = [&](const std::string& auth) {
    grpc::ClientContext ctx;
    if (!auth.empty()) ctx.AddMetadata("authorization", auth);
    pb::TokenizeRequest req;
    req.set_text("hi");
    pb::TokenizeResponse resp;
    return stub_->Tokenize(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(tokenize(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(tokenize("Bearer wrong"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(tokenize("Bearer s3cret-ke"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(tokenize("s3cret-key"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(tokenize("Bearer s3cret-key"), grpc::StatusCode::OK);

  EXPECT_EQ(generate(text_request("hi", 2)).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer s3cret-key");
  EXPECT_TRUE(collect(*stub_->Generate(&ctx, text_request("hi", 2))).status.ok());
  EXPECT_EQ(engine_->submitted().size(), 1u);

  // Health stays open for load balancers.
  auto health = ::grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext hctx;
  ::grpc::health::v1::HealthCheckResponse hresp;
  EXPECT_TRUE(health->Check(&hctx, {}, &hresp).ok());
}

}  // namespace
}  // namespace tessera::server::testing
#endif  // TESSERA_HAVE_GRPC
