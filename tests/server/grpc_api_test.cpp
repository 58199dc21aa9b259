// gRPC API: Generate/Chat streams, Tokenize, GetModelInfo/GetServerInfo and Health against an
// in-process GrpcServer over a FakeEngine, through a real gRPC stub.
#if defined(TESSERA_HAVE_GRPC)
#include <random>
#include <thread>

#include "grpc_test_fixture.h"

namespace tessera::server::testing {
namespace {

std::vector<int32_t> expected_ids(const FakeEngine& e, int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(e.script_ids()[size_t(i) % e.script_ids().size()]);
  return ids;
}

TEST_F(GrpcTest, GenerateStreamsChunksThenComplete) {
  serve();
  const StreamResult r = generate(text_request("hello world", 7));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GE(r.msgs.size(), 2u);
  EXPECT_EQ(r.text, engine_->expected_text(7));
  EXPECT_EQ(r.ids, expected_ids(*engine_, 7));
  const auto prompt = engine_->tokenizer().encode("hello world");
  int last_completion = 0;
  const std::string id = r.msgs.front().request_id();
  EXPECT_EQ(id.rfind("grpc-", 0), 0u) << id;  // assigned by the server
  for (size_t i = 0; i + 1 < r.msgs.size(); ++i) {
    const pb::GenerateResponse& m = r.msgs[i];
    ASSERT_TRUE(m.has_chunk()) << i;
    EXPECT_EQ(m.request_id(), id);
    EXPECT_EQ(m.chunk().usage().prompt_tokens(), int(prompt.size()));
    EXPECT_GT(m.chunk().usage().completion_tokens(), last_completion);  // cumulative
    last_completion = m.chunk().usage().completion_tokens();
  }
  ASSERT_TRUE(r.last()->has_complete());
  EXPECT_EQ(r.last()->request_id(), id);
  EXPECT_EQ(r.last()->complete().finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.last()->complete().usage().completion_tokens(), 7);
  EXPECT_EQ(r.last()->complete().usage().prompt_tokens(), int(prompt.size()));
  EXPECT_FALSE(r.last()->complete().has_matched_stop());
  ASSERT_EQ(engine_->submitted().size(), 1u);
  EXPECT_EQ(engine_->submitted()[0].prompt_ids, prompt);
}

TEST_F(GrpcTest, TokenIdsInAndOptionsReachTheEngine) {
  serve();
  std::mt19937 rng(std::random_device{}());
  const int vocab = engine_->tokenizer().vocab_size();
  pb::GenerateRequest req;
  req.set_request_id("tok-" + std::to_string(rng()));
  std::vector<int32_t> prompt(1 + rng() % 20);
  for (int32_t& t : prompt) t = int32_t(rng() % uint32_t(vocab));
  req.mutable_tokens()->mutable_ids()->Add(prompt.begin(), prompt.end());
  pb::SamplingOptions* s = req.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_k(5);
  s->set_seed(rng());
  s->set_min_p(0.0f);  // explicitly zero: stays zero
  (*s->mutable_logit_bias())[3] = 1.5f;
  req.mutable_stopping()->set_max_tokens(4);
  req.mutable_stopping()->add_stop_token_ids(7);
  req.mutable_output()->set_top_logprobs(2);
  req.mutable_output()->set_skip_text(true);
  req.set_priority(3);

  const StreamResult r = generate(req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids, expected_ids(*engine_, 4));
  EXPECT_EQ(r.text, "");  // skip_text
  for (const auto& m : r.msgs) {
    EXPECT_EQ(m.request_id(), req.request_id());
    if (!m.has_chunk()) continue;
    ASSERT_EQ(m.chunk().logprobs_size(), m.chunk().token_ids_size());
    for (const auto& lp : m.chunk().logprobs()) EXPECT_EQ(lp.top_size(), 2);
  }
  ASSERT_EQ(engine_->submitted().size(), 1u);
  const protocol::GenerationRequest g = engine_->submitted()[0];
  EXPECT_EQ(g.request_id, req.request_id());
  EXPECT_EQ(g.prompt_ids, prompt);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_EQ(g.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 1.0f);  // unset: the default
  EXPECT_EQ(g.sampling.seed, req.sampling().seed());
  ASSERT_EQ(g.sampling.logit_bias.size(), 1u);
  EXPECT_EQ(g.sampling.logit_bias[0].first, 3);
  EXPECT_TRUE(g.sampling.logprobs);
  EXPECT_EQ(g.sampling.top_logprobs, 2);
  EXPECT_EQ(g.stopping.max_tokens, 4);
  EXPECT_EQ(g.stopping.stop_token_ids, std::vector<int32_t>{7});
  EXPECT_EQ(g.priority, 3);
}

TEST_F(GrpcTest, StopStringEndsWithMatchedStop) {
  serve();
  pb::GenerateRequest req = text_request("hi", 50);
  req.mutable_stopping()->add_stop("wor");
  const StreamResult r = generate(req);
  ASSERT_TRUE(r.status.ok());
  ASSERT_TRUE(r.last()->has_complete());
  EXPECT_EQ(r.last()->complete().finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(r.last()->complete().matched_stop(), "wor");
  EXPECT_EQ(r.text.rfind("hello", 0), 0u) << r.text;  // stopped early, not after 50 tokens
  EXPECT_LT(r.last()->complete().usage().completion_tokens(), 10);
}

TEST_F(GrpcTest, ChatRendersTheTemplate) {
  serve();
  pb::ChatRequest req;
  auto* sys = req.add_messages();
  sys->set_role("system");
  sys->set_content("be brief");
  auto* user = req.add_messages();
  user->set_role("user");
  user->set_content("hello");
  req.mutable_stopping()->set_max_tokens(3);
  const StreamResult r = chat(req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, engine_->expected_text(3));
  ASSERT_TRUE(r.last()->has_complete());
  const std::string rendered =
      "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
      "<|im_start|>assistant\n";
  ASSERT_EQ(engine_->submitted().size(), 1u);
  EXPECT_EQ(engine_->submitted()[0].prompt_ids,
            engine_->tokenizer().encode(rendered, {.add_special = false, .parse_special = true}));
}

TEST_F(GrpcTest, Tokenize) {
  serve();
  grpc::ClientContext ctx;
  pb::TokenizeRequest req;
  req.set_text("hello world<|im_end|>");
  pb::TokenizeResponse resp;
  ASSERT_TRUE(stub_->Tokenize(&ctx, req, &resp).ok());
  const auto ids = engine_->tokenizer().encode(req.text());
  EXPECT_EQ(std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end()), ids);
  EXPECT_EQ(resp.count(), int(ids.size()));
  EXPECT_EQ(resp.max_model_len(), 512);
}

TEST_F(GrpcTest, ModelAndServerInfo) {
  serve();
  {
    grpc::ClientContext ctx;
    pb::GetModelInfoResponse info;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
    EXPECT_EQ(info.model_id(), "fake-model");
    EXPECT_EQ(info.max_model_len(), 512);
    EXPECT_EQ(info.vocab_size(), engine_->tokenizer().vocab_size());
    EXPECT_EQ(info.eos_token_id(), engine_->tokenizer().eos_id());
    EXPECT_EQ(info.chat_template(), engine_->tokenizer().chat_template());
  }
  grpc::ClientContext ctx;
  pb::GetServerInfoResponse info;
  ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.max_num_seqs(), engine_->limits().max_num_seqs);
  EXPECT_EQ(info.max_num_batched_tokens(), engine_->limits().max_num_batched_tokens);
  EXPECT_EQ(info.max_model_len(), 512);
  EXPECT_TRUE(info.ready());
  EXPECT_EQ(info.active_streams(), 0);
  EXPECT_FALSE(info.version().empty());
}

TEST_F(GrpcTest, HealthFollowsTheEngine) {
  serve();
  auto health = ::grpc::health::v1::Health::NewStub(channel_);
  using Resp = ::grpc::health::v1::HealthCheckResponse;
  const auto check = [&](const std::string& service, Resp* resp) {
    grpc::ClientContext ctx;
    ::grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    return health->Check(&ctx, req, resp);
  };
  Resp resp;
  ASSERT_TRUE(check("", &resp).ok());
  EXPECT_EQ(resp.status(), Resp::SERVING);
  ASSERT_TRUE(check("tessera.v1.TesseraService", &resp).ok());
  EXPECT_EQ(resp.status(), Resp::SERVING);
  EXPECT_EQ(check("nope.Service", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  engine_->ready_ = false;
  ASSERT_TRUE(check("", &resp).ok());
  EXPECT_EQ(resp.status(), Resp::NOT_SERVING);
  // Not ready: generation is refused as UNAVAILABLE.
  EXPECT_EQ(generate(text_request("hi", 2)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTest, ConcurrentStreamsStayApart) {
  serve({.step_ms = 2});
  constexpr int kStreams = 8;
  std::mt19937 rng(std::random_device{}());
  std::vector<int> lens(kStreams);
  for (int& n : lens) n = 1 + int(rng() % 40);
  std::vector<StreamResult> results(kStreams);
  std::vector<std::string> ids;
  for (int i = 0; i < kStreams; ++i) ids.push_back(std::string("c") + std::to_string(i));
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      pb::GenerateRequest req = text_request("hello", lens[size_t(i)]);
      req.set_request_id(ids[size_t(i)]);
      results[size_t(i)] = generate(req);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    const StreamResult& r = results[size_t(i)];
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error_message();
    EXPECT_EQ(r.text, engine_->expected_text(lens[size_t(i)])) << i;
    const std::string id = ids[size_t(i)];
    for (const auto& m : r.msgs) EXPECT_EQ(m.request_id(), id);
  }
}

}  // namespace
}  // namespace tessera::server::testing
#endif  // TESSERA_HAVE_GRPC
