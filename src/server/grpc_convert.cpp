// Protobuf <-> protocol conversions and validation for the gRPC API (see grpc_convert.h).
#if defined(TESSERA_HAVE_GRPC)
#include "tessera/server/grpc_convert.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/grammar.h"
#include "tessera/json/bounded_json.h"
#include "tessera/server/api_error.h"
#include "tessera/server/request_validation.h"

namespace tessera::server::rpc {
namespace {

void check_finite(float v, const char* field) {
  if (!std::isfinite(v)) fail(ErrorCode::kInvalidArgument, field, ": must be a finite number");
}

void check_token(int32_t id, int vocab_size, const std::string& field) {
  if (id < 0 || id >= vocab_size) {
    fail(ErrorCode::kInvalidArgument, field, ": token id ", id, " is outside the vocabulary (size ",
         vocab_size, ")");
  }
}

// The structured-output oneof → GBNF through the grammar front ends (as HTTP's response_format).
void read_constraint(const pb::SamplingOptions& in, sampling::SamplingParams& p) {
  using C = pb::SamplingOptions;
  const char* field = nullptr;
  try {
    switch (in.constraint_case()) {
      case C::CONSTRAINT_NOT_SET:
        return;
      case C::kJsonSchema:
        field = "sampling.json_schema";
        p.grammar = grammar::json_schema_to_gbnf(
            json::parse_ordered(in.json_schema(), json::kRequestLimits, field));
        break;
      case C::kJsonObject:
        field = "sampling.json_object";
        if (in.json_object()) p.grammar = grammar::json_object_gbnf();
        break;
      case C::kRegex:
        field = "sampling.regex";
        p.grammar = grammar::regex_to_gbnf(in.regex());
        break;
      case C::kChoice: {
        field = "sampling.choice";
        std::vector<std::string> choices(in.choice().choices().begin(), in.choice().choices().end());
        p.grammar = grammar::choice_to_gbnf(choices);
        break;
      }
      case C::kGrammar:
        field = "sampling.grammar";
        p.grammar = in.grammar();
        break;
    }
    if (!p.grammar.empty()) (void)grammar::Grammar::parse(p.grammar);
  } catch (const Error& e) {
    fail(ErrorCode::kInvalidArgument, field, ": ", e.what());
  }
}

// Type-level reading only: every range is request_validation's, shared with HTTP.
void read_sampling(const pb::SamplingOptions& in, sampling::SamplingParams& p) {
  if (in.has_temperature()) p.temperature = in.temperature();
  if (in.has_top_p()) p.top_p = in.top_p();
  if (in.has_top_k()) p.top_k = in.top_k();
  if (in.has_min_p()) p.min_p = in.min_p();
  if (in.has_seed()) p.seed = in.seed();
  if (in.has_repetition_penalty()) p.repetition_penalty = in.repetition_penalty();
  if (in.has_presence_penalty()) p.presence_penalty = in.presence_penalty();
  if (in.has_frequency_penalty()) p.frequency_penalty = in.frequency_penalty();
  for (const auto& [token, bias] : in.logit_bias()) {
    check_finite(bias, "sampling.logit_bias");
    p.logit_bias.emplace_back(token, bias);
  }
  // The map's order is unspecified; sort so equal requests give equal SamplingParams.
  std::sort(p.logit_bias.begin(), p.logit_bias.end());
  read_constraint(in, p);
}

// One prompt, the options, then the shared validation (as HTTP's parse_common does).
// `grammar`: a forced tool call's grammar, which replaces the (then absent) constraint.
engine::ValidRequest finish_request(std::vector<int32_t> prompt_ids, bool chat,
                                    const pb::SamplingOptions& sampling,
                                    const pb::StoppingOptions& stopping,
                                    const pb::OutputOptions& output, const ParseContext& pc,
                                    const std::string& grammar = "") {
  ParsedGeneration g;
  g.chat = chat;
  read_sampling(sampling, g.sampling);
  if (!grammar.empty()) g.sampling.grammar = grammar;
  protocol::StoppingParams& st = g.stopping;
  for (const std::string& s : stopping.stop()) st.stop.push_back(s);
  st.stop_token_ids.assign(stopping.stop_token_ids().begin(), stopping.stop_token_ids().end());
  st.ignore_eos = stopping.ignore_eos();
  st.include_stop_str_in_output = stopping.include_stop_str_in_output();
  g.top_logprobs = output.top_logprobs();
  g.logprobs = output.logprobs() || output.top_logprobs() > 0;
  g.sampling.top_logprobs = g.top_logprobs;
  g.sampling.logprobs = g.logprobs;
  g.max_tokens.push_back(stopping.has_max_tokens() ? stopping.max_tokens()
                                                   : protocol::StoppingParams{}.max_tokens);
  g.prompts.push_back(std::move(prompt_ids));
  try {
    return std::move(validate_generation(g, pc, grpc_field).front());
  } catch (const ApiError& e) {
    fail(ErrorCode::kInvalidArgument, e.what());
  }
}

}  // namespace

std::string grpc_field(std::string_view param) {
  static constexpr std::string_view kSampling[] = {"temperature",
                                                   "top_p",
                                                   "top_k",
                                                   "min_p",
                                                   "seed",
                                                   "repetition_penalty",
                                                   "presence_penalty",
                                                   "frequency_penalty",
                                                   "logit_bias"};
  static constexpr std::string_view kStopping[] = {"max_tokens", "stop", "stop_token_ids"};
  for (auto f : kSampling) {
    if (f == param) return "sampling." + std::string(param);
  }
  for (auto f : kStopping) {
    if (f == param) return "stopping." + std::string(param);
  }
  if (param == "top_logprobs") return "output.top_logprobs";
  if (param == "prompt") return "input";
  return std::string(param);
}

engine::ValidRequest to_generation_request(const pb::GenerateRequest& in,
                                           const ParseContext& pc) {
  std::vector<int32_t> ids;
  const int vocab = pc.tok.vocab_size();
  switch (in.input_case()) {
    case pb::GenerateRequest::kText: {
      // A raw-text prompt is the client's own (as HTTP completions): special tokens parse.
      const bool special = in.has_add_special_tokens() ? in.add_special_tokens() : true;
      ids = pc.tok.encode(in.text(), {.add_special = special, .parse_special = true});
      break;
    }
    case pb::GenerateRequest::kTokens:
      for (int i = 0; i < in.tokens().ids_size(); ++i) {
        check_token(in.tokens().ids(i), vocab, detail::concat("tokens.ids[", i, "]"));
      }
      ids.assign(in.tokens().ids().begin(), in.tokens().ids().end());
      break;
    default:
      fail(ErrorCode::kInvalidArgument, "input: set one of `text` or `tokens`");
  }
  if (ids.empty()) fail(ErrorCode::kInvalidArgument, "input: the prompt is empty");
  engine::ValidRequest req =
      finish_request(std::move(ids), false, in.sampling(), in.stopping(), in.output(), pc);
  req.set_request_id(in.request_id());
  req.set_priority(in.priority());
  return req;
}

namespace {

nlohmann::ordered_json json_field(const std::string& text, const char* field) {
  try {
    return json::parse_ordered(text, json::kRequestLimits, field);
  } catch (const Error& e) {
    fail(ErrorCode::kInvalidArgument, e.what());
  }
}

// tools_json / tool_choice_json / parallel_tool_calls through HTTP's validation; its messages
// name the OpenAI field, so the gRPC field is put in front.
ToolRequest read_tools(const pb::ChatRequest& in, const ParseContext& pc) {
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  if (!in.tools_json().empty()) {
    body["tools"] = json_field(in.tools_json(), "tools_json");
    if (!body["tools"].is_array())
      fail(ErrorCode::kInvalidArgument, "tools_json: must be a JSON array of tool schemas");
  }
  if (!in.tool_choice_json().empty())
    body["tool_choice"] = json_field(in.tool_choice_json(), "tool_choice_json");
  if (in.has_parallel_tool_calls()) body["parallel_tool_calls"] = in.parallel_tool_calls();
  const ToolFormat format =
      pc.chat_template ? detect_tool_format(pc.chat_template->source()) : ToolFormat::kNone;
  const bool constrained =
      in.sampling().constraint_case() != pb::SamplingOptions::CONSTRAINT_NOT_SET;
  try {
    return parse_tool_request(body, format, constrained);
  } catch (const ApiError& e) {
    const std::string field = e.param() == "tools" ? "tools_json" : e.param() + "_json";
    fail(ErrorCode::kInvalidArgument, e.param() == "parallel_tool_calls" ? e.param() : field, ": ",
         e.what());
  }
}

}  // namespace

engine::ValidRequest chat_to_generation_request(const pb::ChatRequest& in, const ParseContext& pc,
                                                ToolRequest* tools_out) {
  if (in.messages_size() == 0) fail(ErrorCode::kInvalidArgument, "messages: must not be empty");
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (const pb::ChatMessage& m : in.messages()) {
    nlohmann::ordered_json j = {{"role", m.role()}, {"content", m.content()}};
    if (!m.name().empty()) j["name"] = m.name();
    if (!m.tool_call_id().empty()) j["tool_call_id"] = m.tool_call_id();
    if (!m.tool_calls_json().empty())
      j["tool_calls"] = json_field(m.tool_calls_json(), "messages.tool_calls_json");
    messages.push_back(std::move(j));
  }
  ToolRequest tools = read_tools(in, pc);
  const bool gen_prompt = in.has_add_generation_prompt() ? in.add_generation_prompt() : true;
  std::vector<int32_t> ids;
  try {
    ids = encode_chat(render_chat(messages, tools.template_tools, gen_prompt, pc), pc.tok);
  } catch (const ApiError& e) {
    fail(ErrorCode::kInvalidArgument, e.what());
  }
  engine::ValidRequest req =
      finish_request(std::move(ids), true, in.sampling(), in.stopping(), in.output(), pc,
                     tools.parse_output() ? tool_call_grammar(tools) : "");
  req.set_request_id(in.request_id());
  req.set_priority(in.priority());
  if (tools_out) *tools_out = std::move(tools);
  return req;
}

void add_tool_calls(const ToolCallUpdate& parsed, const std::string& id_prefix,
                    pb::GenerateResponse& last) {
  if (!last.has_complete()) return;
  pb::Complete* done = last.mutable_complete();
  done->set_content(parsed.content);
  for (size_t i = 0; i < parsed.calls.size(); ++i) {
    pb::ToolCall* c = done->add_tool_calls();
    c->set_id(id_prefix + std::to_string(i));
    c->set_name(parsed.calls[i].name);
    c->set_arguments(parsed.calls[i].arguments);
  }
  if (!parsed.calls.empty() && done->finish_reason() == pb::FINISH_REASON_STOP)
    done->set_finish_reason(pb::FINISH_REASON_TOOL_CALLS);
}

void append_responses(const protocol::RequestOutput& out, bool skip_text,
                      std::vector<pb::GenerateResponse>& dst) {
  const auto usage = [&](pb::Usage* u) {
    u->set_prompt_tokens(out.prompt_tokens);
    u->set_completion_tokens(out.completion_tokens);
    u->set_cached_tokens(out.cached_tokens);
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
