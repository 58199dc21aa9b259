// Wire codec: random round trips of plans, results, hellos and errors, and every truncation or
// header corruption of an encoded frame failing with tessera::Error.
#include "tessera/protocol/codec.h"

#include <gtest/gtest.h>

#include <random>

namespace tessera::protocol {
namespace {

class Gen {
 public:
  Gen() : rng_(std::random_device{}()) {}
  int32_t i32(int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng_);
  }
  uint64_t u64() { return rng_(); }
  float f32() { return std::uniform_real_distribution<float>(-100.f, 100.f)(rng_); }
  bool coin() { return i32(0, 1) == 1; }
  std::vector<int32_t> ints(int max_len) {
    std::vector<int32_t> v(i32(0, max_len));
    for (auto& x : v) x = i32(INT32_MIN, INT32_MAX);
    return v;
  }
  sampling::SamplingParams sampling() {
    sampling::SamplingParams s;
    s.temperature = f32();
    s.top_k = i32(-5, 1000);
    s.top_p = f32();
    s.min_p = f32();
    s.repetition_penalty = f32();
    s.presence_penalty = f32();
    s.frequency_penalty = f32();
    for (int i = i32(0, 4); i > 0; --i) s.logit_bias.emplace_back(i32(0, 50000), f32());
    if (coin()) s.seed = u64();
    s.top_logprobs = i32(0, 20);
    s.logprobs = coin();
    if (coin()) s.grammar = "root ::= \"x\"{" + std::to_string(i32(0, 9)) + "}";
    return s;
  }
  ExecutePlan plan() {
    ExecutePlan p;
    for (int i = i32(0, 3); i > 0; --i)
      p.new_sequences.push_back({u64(), sampling(), ints(20), i32(0, 63)});
    for (int i = i32(0, 3); i > 0; --i) p.finished.push_back(u64());
    for (int i = i32(0, 4); i > 0; --i)
      p.chunks.push_back({u64(), ints(30), i32(0, 4096), ints(10), coin(), i32(0, 63)});
    return p;
  }
  ExecuteResult result() {
    ExecuteResult r;
    for (int i = i32(0, 5); i > 0; --i) {
      SampledToken t{u64(), {i32(0, 50000), f32(), {}}};
      for (int k = i32(0, 5); k > 0; --k) t.result.top.push_back({i32(0, 50000), f32()});
      r.sampled.push_back(t);
    }
    for (int i = i32(0, 4); i > 0; --i)
      r.expert_tokens.push_back({i32(0, 95), i32(0, 127), static_cast<uint32_t>(u64())});
    for (int i = i32(0, 3); i > 0; --i)
      r.comm_bytes.push_back({std::string(static_cast<size_t>(i32(0, 3)), 'g'),
                              std::string(static_cast<size_t>(i32(0, 14)), 'o'), u64(), u64()});
    return r;
  }

 private:
  std::mt19937_64 rng_;
};

void expect_same(const sampling::SamplingParams& a, const sampling::SamplingParams& b) {
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.top_p, b.top_p);
  EXPECT_EQ(a.min_p, b.min_p);
  EXPECT_EQ(a.repetition_penalty, b.repetition_penalty);
  EXPECT_EQ(a.presence_penalty, b.presence_penalty);
  EXPECT_EQ(a.frequency_penalty, b.frequency_penalty);
  EXPECT_EQ(a.logit_bias, b.logit_bias);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.top_logprobs, b.top_logprobs);
  EXPECT_EQ(a.logprobs, b.logprobs);
  EXPECT_EQ(a.grammar, b.grammar);
}

void expect_same(const ExecutePlan& a, const ExecutePlan& b) {
  ASSERT_EQ(a.new_sequences.size(), b.new_sequences.size());
  for (size_t i = 0; i < a.new_sequences.size(); ++i) {
    EXPECT_EQ(a.new_sequences[i].seq_id, b.new_sequences[i].seq_id);
    expect_same(a.new_sequences[i].sampling, b.new_sequences[i].sampling);
    EXPECT_EQ(a.new_sequences[i].prompt, b.new_sequences[i].prompt);
    EXPECT_EQ(a.new_sequences[i].attention_rank, b.new_sequences[i].attention_rank);
  }
  EXPECT_EQ(a.finished, b.finished);
  ASSERT_EQ(a.chunks.size(), b.chunks.size());
  for (size_t i = 0; i < a.chunks.size(); ++i) {
    EXPECT_EQ(a.chunks[i].seq_id, b.chunks[i].seq_id);
    EXPECT_EQ(a.chunks[i].tokens, b.chunks[i].tokens);
    EXPECT_EQ(a.chunks[i].start_pos, b.chunks[i].start_pos);
    EXPECT_EQ(a.chunks[i].block_table, b.chunks[i].block_table);
    EXPECT_EQ(a.chunks[i].sample, b.chunks[i].sample);
    EXPECT_EQ(a.chunks[i].attention_rank, b.chunks[i].attention_rank);
  }
}

void expect_same(const ExecuteResult& a, const ExecuteResult& b) {
  ASSERT_EQ(a.sampled.size(), b.sampled.size());
  for (size_t i = 0; i < a.sampled.size(); ++i) {
    EXPECT_EQ(a.sampled[i].seq_id, b.sampled[i].seq_id);
    EXPECT_EQ(a.sampled[i].result.token, b.sampled[i].result.token);
    EXPECT_EQ(a.sampled[i].result.logprob, b.sampled[i].result.logprob);
    ASSERT_EQ(a.sampled[i].result.top.size(), b.sampled[i].result.top.size());
    for (size_t k = 0; k < a.sampled[i].result.top.size(); ++k) {
      EXPECT_EQ(a.sampled[i].result.top[k].token, b.sampled[i].result.top[k].token);
      EXPECT_EQ(a.sampled[i].result.top[k].logprob, b.sampled[i].result.top[k].logprob);
    }
  }
  ASSERT_EQ(a.expert_tokens.size(), b.expert_tokens.size());
  for (size_t i = 0; i < a.expert_tokens.size(); ++i) {
    EXPECT_EQ(a.expert_tokens[i].layer, b.expert_tokens[i].layer);
    EXPECT_EQ(a.expert_tokens[i].expert, b.expert_tokens[i].expert);
    EXPECT_EQ(a.expert_tokens[i].tokens, b.expert_tokens[i].tokens);
  }
  ASSERT_EQ(a.comm_bytes.size(), b.comm_bytes.size());
  for (size_t i = 0; i < a.comm_bytes.size(); ++i) {
    EXPECT_EQ(a.comm_bytes[i].group, b.comm_bytes[i].group);
    EXPECT_EQ(a.comm_bytes[i].op, b.comm_bytes[i].op);
    EXPECT_EQ(a.comm_bytes[i].calls, b.comm_bytes[i].calls);
    EXPECT_EQ(a.comm_bytes[i].bytes, b.comm_bytes[i].bytes);
  }
}

// Every proper prefix of an encoded frame, and every one-byte extension, must throw Error.
void expect_truncations_fail(const std::vector<uint8_t>& frame) {
  for (size_t n = 0; n < frame.size(); ++n) {
    const std::span<const uint8_t> prefix(frame.data(), n);
    EXPECT_THROW(decode_frame(prefix), Error) << "prefix of " << n << " bytes";
  }
  auto padded = frame;
  padded.push_back(0);
  EXPECT_THROW(decode_frame(padded), Error);
}

TEST(Codec, PlanRoundTripsAndTruncationsFail) {
  Gen g;
  for (int iter = 0; iter < 50; ++iter) {
    const ExecutePlan p = g.plan();
    const auto frame = encode_frame(FrameType::kPlan, encode_plan(p));
    const Frame f = decode_frame(frame);
    ASSERT_EQ(f.type, FrameType::kPlan);
    expect_same(p, decode_plan(f.payload));
    expect_truncations_fail(frame);
    // Truncated payloads (a frame whose header agrees with a short payload) fail too.
    const auto payload = encode_plan(p);
    for (size_t n = 0; n < payload.size(); ++n)
      EXPECT_THROW(decode_plan(std::span<const uint8_t>(payload.data(), n)), Error) << n;
  }
}

TEST(Codec, ResultRoundTripsAndTruncationsFail) {
  Gen g;
  for (int iter = 0; iter < 50; ++iter) {
    const ExecuteResult r = g.result();
    const auto frame = encode_frame(FrameType::kResult, encode_result(r));
    const Frame f = decode_frame(frame);
    ASSERT_EQ(f.type, FrameType::kResult);
    expect_same(r, decode_result(f.payload));
    expect_truncations_fail(frame);
    const auto payload = encode_result(r);
    for (size_t n = 0; n < payload.size(); ++n)
      EXPECT_THROW(decode_result(std::span<const uint8_t>(payload.data(), n)), Error) << n;
  }
}

TEST(Codec, HelloAndErrorRoundTrip) {
  Gen g;
  const WorkerHello h{g.i32(1, 1 << 20), g.i32(1, 1 << 20), g.i32(1, 100), g.i32(0, 1 << 16),
                      g.i32(1, 256)};
  EXPECT_EQ(decode_hello(encode_hello(h)), h);
  const auto hello_frame = encode_frame(FrameType::kHello, encode_hello(h));
  expect_truncations_fail(hello_frame);

  const WorkerError e{ErrorCode::kNotFound, "no such file: /x/" + std::to_string(g.u64())};
  const WorkerError d = decode_error(encode_error(e));
  EXPECT_EQ(d.code, e.code);
  EXPECT_EQ(d.message, e.message);
  expect_truncations_fail(encode_frame(FrameType::kError, encode_error(e)));
  auto bad = encode_error(e);
  bad[0] = 200;  // unknown error code
  EXPECT_THROW(decode_error(bad), Error);
  EXPECT_NO_THROW(decode_frame(encode_frame(FrameType::kShutdown, {})));
}

TEST(Codec, CorruptHeadersAndCountsFail) {
  Gen g;
  auto frame = encode_frame(FrameType::kPlan, encode_plan(g.plan()));
  auto bad_type = frame;
  bad_type[4] = 0;
  EXPECT_THROW(decode_frame(bad_type), Error);
  bad_type[4] = 99;
  EXPECT_THROW(decode_frame(bad_type), Error);
  auto huge = frame;
  huge[0] = huge[1] = huge[2] = huge[3] = 0xff;  // 4 GiB payload claimed
  try {
    decode_frame_header(std::span<const uint8_t>(huge.data(), kFrameHeaderSize));
    FAIL() << "oversized frame accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  }
  // A plan whose first count claims a billion sequences must fail without allocating them.
  std::vector<uint8_t> lying = {0x00, 0xca, 0x9a, 0x3b};
  EXPECT_THROW(decode_plan(lying), Error);
  // Random byte flips never crash: they decode to something or throw Error.
  const auto payload = encode_plan(g.plan());
  for (int i = 0; i < 500 && !payload.empty(); ++i) {
    auto p = payload;
    p[static_cast<size_t>(g.i32(0, static_cast<int32_t>(p.size()) - 1))] ^=
        static_cast<uint8_t>(g.i32(1, 255));
    try {
      (void)decode_plan(p);
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace tessera::protocol
