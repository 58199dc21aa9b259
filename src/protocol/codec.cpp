#include "tessera/protocol/codec.h"

#include <bit>
#include <cstring>

namespace tessera::protocol {
namespace {

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void f32(float v) { u32(std::bit_cast<uint32_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void count(size_t n) {
    TESSERA_CHECK(n <= kMaxFramePayload, "too many elements to encode: ", n);
    u32(static_cast<uint32_t>(n));
  }
  void i32s(const std::vector<int32_t>& v) {
    count(v.size());
    for (int32_t x : v) i32(x);
  }
  void str(const std::string& s) {
    count(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

// Every read checks the remaining length first, so a short buffer is an Error, not a crash.
class Reader {
 public:
  Reader(std::span<const uint8_t> in, const char* what) : in_(in), what_(what) {}
  uint8_t u8() { return take(1)[0]; }
  uint32_t u32() {
    const uint8_t* p = take(4);
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  }
  uint64_t u64() {
    const uint64_t lo = u32();
    return lo | uint64_t{u32()} << 32;
  }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  float f32() { return std::bit_cast<float>(u32()); }
  bool boolean() {
    const uint8_t v = u8();
    if (v > 1) fail(ErrorCode::kCorruptFile, what_, ": bad boolean byte ", int{v});
    return v == 1;
  }
  // An element count, checked against what is left so a corrupt count cannot allocate wildly.
  size_t count(size_t min_element_size) {
    const uint32_t n = u32();
    if (static_cast<uint64_t>(n) * min_element_size > remaining())
      fail(ErrorCode::kCorruptFile, what_, ": element count ", n, " exceeds the ", remaining(),
           " bytes left");
    return n;
  }
  std::vector<int32_t> i32s() {
    std::vector<int32_t> v(count(4));
    for (auto& x : v) x = i32();
    return v;
  }
  std::string str() {
    const size_t n = count(1);
    const uint8_t* p = take(n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  size_t remaining() const { return in_.size() - pos_; }
  void finish() const {
    if (remaining() != 0)
      fail(ErrorCode::kCorruptFile, what_, ": ", remaining(), " unexpected trailing bytes");
  }

 private:
  const uint8_t* take(size_t n) {
    if (n > remaining())
      fail(ErrorCode::kCorruptFile, what_, ": truncated (need ", n, " bytes at offset ", pos_,
           ", have ", remaining(), ")");
    const uint8_t* p = in_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  const char* what_;
};

void put_sampling(Writer& w, const sampling::SamplingParams& s) {
  w.f32(s.temperature);
  w.i32(s.top_k);
  w.f32(s.top_p);
  w.f32(s.min_p);
  w.f32(s.repetition_penalty);
  w.f32(s.presence_penalty);
  w.f32(s.frequency_penalty);
  w.count(s.logit_bias.size());
  for (const auto& [tok, bias] : s.logit_bias) {
    w.i32(tok);
    w.f32(bias);
  }
  w.boolean(s.seed.has_value());
  if (s.seed) w.u64(*s.seed);
  w.i32(s.top_logprobs);
  w.boolean(s.logprobs);
  w.str(s.grammar);
}

sampling::SamplingParams get_sampling(Reader& r) {
  sampling::SamplingParams s;
  s.temperature = r.f32();
  s.top_k = r.i32();
  s.top_p = r.f32();
  s.min_p = r.f32();
  s.repetition_penalty = r.f32();
  s.presence_penalty = r.f32();
  s.frequency_penalty = r.f32();
  s.logit_bias.resize(r.count(8));
  for (auto& [tok, bias] : s.logit_bias) {
    tok = r.i32();
    bias = r.f32();
  }
  if (r.boolean()) s.seed = r.u64();
  s.top_logprobs = r.i32();
  s.logprobs = r.boolean();
  s.grammar = r.str();
  return s;
}

bool known_type(uint8_t t) { return t >= 1 && t <= 7; }

}  // namespace

std::vector<uint8_t> encode_plan(const ExecutePlan& plan) {
  Writer w;
  w.count(plan.new_sequences.size());
  for (const auto& ns : plan.new_sequences) {
    w.u64(ns.seq_id);
    put_sampling(w, ns.sampling);
    w.i32s(ns.prompt);
    w.i32(ns.attention_rank);
  }
  w.count(plan.finished.size());
  for (uint64_t id : plan.finished) w.u64(id);
  w.count(plan.chunks.size());
  for (const auto& c : plan.chunks) {
    w.u64(c.seq_id);
    w.i32s(c.tokens);
    w.i32(c.start_pos);
    w.i32s(c.block_table);
    w.boolean(c.sample);
    w.i32(c.attention_rank);
  }
  return w.take();
}

ExecutePlan decode_plan(std::span<const uint8_t> payload) {
  Reader r(payload, "execute plan");
  ExecutePlan plan;
  plan.new_sequences.resize(r.count(8));
  for (auto& ns : plan.new_sequences) {
    ns.seq_id = r.u64();
    ns.sampling = get_sampling(r);
    ns.prompt = r.i32s();
    ns.attention_rank = r.i32();
  }
  plan.finished.resize(r.count(8));
  for (auto& id : plan.finished) id = r.u64();
  plan.chunks.resize(r.count(8));
  for (auto& c : plan.chunks) {
    c.seq_id = r.u64();
    c.tokens = r.i32s();
    c.start_pos = r.i32();
    c.block_table = r.i32s();
    c.sample = r.boolean();
    c.attention_rank = r.i32();
  }
  r.finish();
  return plan;
}

std::vector<uint8_t> encode_result(const ExecuteResult& result) {
  Writer w;
  w.count(result.sampled.size());
  for (const auto& s : result.sampled) {
    w.u64(s.seq_id);
    w.i32(s.result.token);
    w.f32(s.result.logprob);
    w.count(s.result.top.size());
    for (const auto& t : s.result.top) {
      w.i32(t.token);
      w.f32(t.logprob);
    }
  }
  w.count(result.expert_tokens.size());
  for (const auto& e : result.expert_tokens) {
    w.i32(e.layer);
    w.i32(e.expert);
    w.u32(e.tokens);
  }
  w.count(result.comm_bytes.size());
  for (const auto& c : result.comm_bytes) {
    w.str(c.group);
    w.str(c.op);
    w.u64(c.calls);
    w.u64(c.bytes);
  }
  return w.take();
}

ExecuteResult decode_result(std::span<const uint8_t> payload) {
  Reader r(payload, "execute result");
  ExecuteResult result;
  result.sampled.resize(r.count(8));
  for (auto& s : result.sampled) {
    s.seq_id = r.u64();
    s.result.token = r.i32();
    s.result.logprob = r.f32();
    s.result.top.resize(r.count(8));
    for (auto& t : s.result.top) {
      t.token = r.i32();
      t.logprob = r.f32();
    }
  }
  result.expert_tokens.resize(r.count(12));
  for (auto& e : result.expert_tokens) {
    e.layer = r.i32();
    e.expert = r.i32();
    e.tokens = r.u32();
  }
  result.comm_bytes.resize(r.count(24));
  for (auto& c : result.comm_bytes) {
    c.group = r.str();
    c.op = r.str();
    c.calls = r.u64();
    c.bytes = r.u64();
  }
  r.finish();
  return result;
}

std::vector<uint8_t> encode_hello(const WorkerHello& h) {
  Writer w;
  for (int32_t v : {h.vocab_size, h.max_position, h.num_layers, h.num_blocks, h.block_size, h.rank})
    w.i32(v);
  w.u64(h.weight_bytes);
  w.u64(h.resident_bytes);
  w.u64(h.kv_bytes);
  return w.take();
}

WorkerHello decode_hello(std::span<const uint8_t> payload) {
  Reader r(payload, "worker hello");
  WorkerHello h;
  h.vocab_size = r.i32();
  h.max_position = r.i32();
  h.num_layers = r.i32();
  h.num_blocks = r.i32();
  h.block_size = r.i32();
  h.rank = r.i32();
  h.weight_bytes = r.u64();
  h.resident_bytes = r.u64();
  h.kv_bytes = r.u64();
  r.finish();
  return h;
}

std::vector<uint8_t> encode_error(const WorkerError& e) {
  Writer w;
  w.u8(static_cast<uint8_t>(e.code));
  w.str(e.message);
  return w.take();
}

WorkerError decode_error(std::span<const uint8_t> payload) {
  Reader r(payload, "worker error");
  WorkerError e;
  const uint8_t code = r.u8();
  if (code > static_cast<uint8_t>(ErrorCode::kUnavailable))
    fail(ErrorCode::kCorruptFile, "worker error: unknown error code ", int{code});
  e.code = static_cast<ErrorCode>(code);
  e.message = r.str();
  r.finish();
  return e;
}

std::vector<uint8_t> encode_frame(FrameType type, std::span<const uint8_t> payload) {
  TESSERA_CHECK(payload.size() <= kMaxFramePayload, "frame payload too large: ", payload.size());
  Writer w;
  w.u32(static_cast<uint32_t>(payload.size()));
  w.u8(static_cast<uint8_t>(type));
  std::vector<uint8_t> out = w.take();
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

FrameHeader decode_frame_header(std::span<const uint8_t> header) {
  Reader r(header, "frame header");
  FrameHeader h;
  h.payload_size = r.u32();
  const uint8_t type = r.u8();
  if (!known_type(type))
    fail(ErrorCode::kCorruptFile, "frame header: unknown frame type ", int{type});
  if (h.payload_size > kMaxFramePayload)
    fail(ErrorCode::kCorruptFile, "frame header: payload of ", h.payload_size,
         " bytes exceeds the ", kMaxFramePayload, " byte limit");
  h.type = static_cast<FrameType>(type);
  return h;
}

Frame decode_frame(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderSize)
    fail(ErrorCode::kCorruptFile, "frame: truncated header (", bytes.size(), " bytes)");
  const FrameHeader h = decode_frame_header(bytes.first(kFrameHeaderSize));
  const auto rest = bytes.subspan(kFrameHeaderSize);
  if (rest.size() != h.payload_size)
    fail(ErrorCode::kCorruptFile, "frame: payload is ", rest.size(), " bytes, header says ",
         h.payload_size);
  return Frame{h.type, std::vector<uint8_t>(rest.begin(), rest.end())};
}

}  // namespace tessera::protocol
