// Protobuf <-> protocol conversions and validation for the gRPC API (see grpc_convert.h).
#if defined(TESSERA_HAVE_GRPC)
#include "tessera/server/grpc_convert.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace tessera::server::rpc {
namespace {

constexpr int kMaxTopLogprobs = 20;
constexpr int kMaxStops = 16;

void check_finite(float v, const char* field) {
  if (!std::isfinite(v)) fail(ErrorCode::kInvalidArgument, field, ": must be a finite number");
}

void check_token(int32_t id, int vocab_size, const std::string& field) {
  if (id < 0 || id >= vocab_size) {
    fail(ErrorCode::kInvalidArgument, field, ": token id ", id, " is outside the vocabulary (size ",
         vocab_size, ")");
  }
}

void apply_sampling(const pb::SamplingOptions& in, int vocab_size, sampling::SamplingParams& p) {
  if (in.has_temperature()) {
    check_finite(in.temperature(), "sampling.temperature");
    if (in.temperature() < 0) {
      fail(ErrorCode::kInvalidArgument, "sampling.temperature: must be >= 0, got ",
           in.temperature());
    }
    p.temperature = in.temperature();
  }
  if (in.has_top_p()) {
    check_finite(in.top_p(), "sampling.top_p");
    if (in.top_p() <= 0 || in.top_p() > 1) {
      fail(ErrorCode::kInvalidArgument, "sampling.top_p: must be in (0, 1], got ", in.top_p());
    }
    p.top_p = in.top_p();
  }
  if (in.has_top_k()) {
    if (in.top_k() < -1) {
      fail(ErrorCode::kInvalidArgument, "sampling.top_k: must be >= -1 (-1 or 0: off), got ",
           in.top_k());
    }
    p.top_k = in.top_k() < 0 ? 0 : in.top_k();
  }
  if (in.has_min_p()) {
    check_finite(in.min_p(), "sampling.min_p");
    if (in.min_p() < 0 || in.min_p() > 1) {
      fail(ErrorCode::kInvalidArgument, "sampling.min_p: must be in [0, 1], got ", in.min_p());
    }
    p.min_p = in.min_p();
  }
  if (in.has_seed()) p.seed = in.seed();
  if (in.has_repetition_penalty()) {
    check_finite(in.repetition_penalty(), "sampling.repetition_penalty");
    if (in.repetition_penalty() <= 0) {
      fail(ErrorCode::kInvalidArgument, "sampling.repetition_penalty: must be > 0, got ",
           in.repetition_penalty());
    }
    p.repetition_penalty = in.repetition_penalty();
  }
  const auto penalty = [](float v, const char* field) {
    check_finite(v, field);
    if (v < -2 || v > 2) fail(ErrorCode::kInvalidArgument, field, ": must be in [-2, 2], got ", v);
    return v;
  };
  if (in.has_presence_penalty()) {
    p.presence_penalty = penalty(in.presence_penalty(), "sampling.presence_penalty");
  }
  if (in.has_frequency_penalty()) {
    p.frequency_penalty = penalty(in.frequency_penalty(), "sampling.frequency_penalty");
  }
  for (const auto& [token, bias] : in.logit_bias()) {
    check_token(token, vocab_size, "sampling.logit_bias");
    check_finite(bias, "sampling.logit_bias");
    p.logit_bias.emplace_back(token, bias);
  }
  // The map's order is unspecified; sort so equal requests give equal SamplingParams.
  std::sort(p.logit_bias.begin(), p.logit_bias.end());
}

}  // namespace

void apply_options(const pb::SamplingOptions& sampling, const pb::StoppingOptions& stopping,
                   const pb::OutputOptions& output, int vocab_size,
                   protocol::GenerationRequest& req) {
  apply_sampling(sampling, vocab_size, req.sampling);
  if (stopping.has_max_tokens()) {
    if (stopping.max_tokens() < 1) {
      fail(ErrorCode::kInvalidArgument, "stopping.max_tokens: must be >= 1, got ",
           stopping.max_tokens());
    }
    req.stopping.max_tokens = stopping.max_tokens();
  }
  if (stopping.stop_size() > kMaxStops) {
    fail(ErrorCode::kInvalidArgument, "stopping.stop: at most ", kMaxStops, " stop strings, got ",
         stopping.stop_size());
  }
  for (int i = 0; i < stopping.stop_size(); ++i) {
    if (stopping.stop(i).empty()) {
      fail(ErrorCode::kInvalidArgument, "stopping.stop[", i, "]: must not be empty");
    }
    req.stopping.stop.push_back(stopping.stop(i));
  }
  for (int i = 0; i < stopping.stop_token_ids_size(); ++i) {
    check_token(stopping.stop_token_ids(i), vocab_size,
                detail::concat("stopping.stop_token_ids[", i, "]"));
    req.stopping.stop_token_ids.push_back(stopping.stop_token_ids(i));
  }
  req.stopping.ignore_eos = stopping.ignore_eos();
  req.stopping.include_stop_str_in_output = stopping.include_stop_str_in_output();

  if (output.top_logprobs() < 0 || output.top_logprobs() > kMaxTopLogprobs) {
    fail(ErrorCode::kInvalidArgument, "output.top_logprobs: must be in [0, ", kMaxTopLogprobs,
         "], got ", output.top_logprobs());
  }
  req.sampling.top_logprobs = output.top_logprobs();
  req.sampling.logprobs = output.logprobs() || output.top_logprobs() > 0;
  req.sampling.validate(vocab_size);
}

protocol::GenerationRequest to_generation_request(const pb::GenerateRequest& in,
                                                  const tokenizer::Tokenizer& tok) {
  protocol::GenerationRequest req;
  req.request_id = in.request_id();
  req.priority = in.priority();
  const int vocab = tok.vocab_size();
  switch (in.input_case()) {
    case pb::GenerateRequest::kText: {
      const bool special = in.has_add_special_tokens() ? in.add_special_tokens() : true;
      req.prompt_ids = tok.encode(in.text(), {.add_special = special, .parse_special = true});
      break;
    }
    case pb::GenerateRequest::kTokens:
      for (int i = 0; i < in.tokens().ids_size(); ++i) {
        check_token(in.tokens().ids(i), vocab, detail::concat("tokens.ids[", i, "]"));
      }
      req.prompt_ids.assign(in.tokens().ids().begin(), in.tokens().ids().end());
      break;
    default:
      fail(ErrorCode::kInvalidArgument, "input: set one of `text` or `tokens`");
  }
  if (req.prompt_ids.empty()) fail(ErrorCode::kInvalidArgument, "input: the prompt is empty");
  apply_options(in.sampling(), in.stopping(), in.output(), vocab, req);
  return req;
}

std::string render_chat(const pb::ChatRequest& in, const tokenizer::ChatTemplate& tmpl) {
  if (in.messages_size() == 0) fail(ErrorCode::kInvalidArgument, "messages: must not be empty");
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (int i = 0; i < in.messages_size(); ++i) {
    const pb::ChatMessage& m = in.messages(i);
    if (m.role().empty()) {
      fail(ErrorCode::kInvalidArgument, "messages[", i, "].role: must not be empty");
    }
    nlohmann::ordered_json j = {{"role", m.role()}, {"content", m.content()}};
    if (!m.name().empty()) j["name"] = m.name();
    if (!m.tool_call_id().empty()) j["tool_call_id"] = m.tool_call_id();
    messages.push_back(std::move(j));
  }
  nlohmann::ordered_json tools = nullptr;
  if (!in.tools_json().empty()) {
    tools = nlohmann::ordered_json::parse(in.tools_json(), nullptr, /*allow_exceptions=*/false);
    if (!tools.is_array()) {
      fail(ErrorCode::kInvalidArgument, "tools_json: must be a JSON array of tool schemas");
    }
  }
  const bool gen_prompt = in.has_add_generation_prompt() ? in.add_generation_prompt() : true;
  return tmpl.render(messages, tools, gen_prompt);
}

void append_responses(const protocol::RequestOutput& out, bool skip_text,
                      std::vector<pb::GenerateResponse>& dst) {
  const auto usage = [&](pb::Usage* u) {
    u->set_prompt_tokens(out.prompt_tokens);
    u->set_completion_tokens(out.completion_tokens);
  };
  if (!out.new_token_ids.empty() || (!skip_text && !out.new_text.empty())) {
    pb::GenerateResponse& r = dst.emplace_back();
    r.set_request_id(out.request_id);
    pb::Chunk* c = r.mutable_chunk();
    c->mutable_token_ids()->Add(out.new_token_ids.begin(), out.new_token_ids.end());
    if (!skip_text) c->set_text(out.new_text);
    for (const sampling::SampleResult& s : out.logprobs) {
      pb::TokenLogprob* lp = c->add_logprobs();
      lp->set_token_id(s.token);
      lp->set_logprob(s.logprob);
      for (const sampling::TokenLogprob& t : s.top) {
        pb::TopLogprob* top = lp->add_top();
        top->set_token_id(t.token);
        top->set_logprob(t.logprob);
      }
    }
    usage(c->mutable_usage());
  }
  if (!out.finished()) return;
  pb::GenerateResponse& r = dst.emplace_back();
  r.set_request_id(out.request_id);
  if (out.finish == protocol::FinishReason::kError) {
    r.mutable_error()->set_code(grpc::StatusCode::INTERNAL);
    r.mutable_error()->set_message(out.error.empty() ? "generation failed" : out.error);
    return;
  }
  pb::Complete* done = r.mutable_complete();
  switch (out.finish) {
    case protocol::FinishReason::kStop:
      done->set_finish_reason(pb::FINISH_REASON_STOP);
      break;
    case protocol::FinishReason::kLength:
      done->set_finish_reason(pb::FINISH_REASON_LENGTH);
      break;
    default:
      done->set_finish_reason(pb::FINISH_REASON_ABORT);
      break;
  }
  if (out.matched_stop) done->set_matched_stop(*out.matched_stop);
  usage(done->mutable_usage());
}

grpc::Status to_status(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
      return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
    case ErrorCode::kResourceExhausted:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()};
    case ErrorCode::kNotFound:
      return {grpc::StatusCode::NOT_FOUND, e.what()};
    case ErrorCode::kUnavailable:
      return {grpc::StatusCode::UNAVAILABLE, e.what()};
    case ErrorCode::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, e.what()};
    default:
      return {grpc::StatusCode::INTERNAL, e.what()};
  }
}

bool valid_request_id(const std::string& id) {
  if (id.size() > 256) return false;
  for (unsigned char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace tessera::server::rpc
#endif  // TESSERA_HAVE_GRPC
