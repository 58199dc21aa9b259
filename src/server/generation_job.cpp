// A chat/completions request in flight: one engine request per choice, outputs gathered on the
// session's strand, answered as one JSON body or as an SSE stream in OpenAI's chunk shapes.
#include "tessera/server/generation_job.h"

#include <chrono>

#include "tessera/core/log.h"
#include "tessera/server/api_error.h"
#include "tessera/server/session.h"
#include "tessera/server/sse.h"

namespace tessera::server {

GenerationJob::GenerationJob(ServerContext& ctx, std::shared_ptr<Session> session,
                             ParsedGeneration parsed)
    : ctx_(ctx), session_(std::move(session)), parsed_(std::move(parsed)) {
  meta_.chat = parsed_.chat;
  meta_.id = ctx_.new_id(parsed_.chat ? "chatcmpl-" : "cmpl-");
  meta_.created = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  meta_.model = ctx_.model_name;
  meta_.logprobs = parsed_.logprobs;
  const size_t total = parsed_.prompts.size() * size_t(parsed_.n);
  choices_.resize(total);
  for (size_t k = 0; k < total; ++k) {
    choices_[k].index = int(k);
    choices_[k].engine_id = total == 1 ? meta_.id : meta_.id + "-" + std::to_string(k);
    choices_[k].prompt_tokens = int(parsed_.prompts[k / size_t(parsed_.n)].size());
    by_engine_id_[choices_[k].engine_id] = k;
    choices_[k].tools_parsed = parsed_.tools.parse_output();
  }
  parsers_.resize(total);
  if (parsed_.tools.parse_output()) {
    for (auto& p : parsers_) p.emplace(parsed_.tools.format);
  }
}

std::vector<ToolCall> GenerationJob::take_calls(ChoiceState& c, ToolCallUpdate& u) {
  c.content += u.content;
  std::vector<ToolCall> fresh;
  for (auto& call : u.calls) {
    if (!parsed_.tools.parallel && !c.tool_calls.empty()) break;  // parallel_tool_calls: false
    call.id = ctx_.new_id("call_");
    c.tool_calls.push_back(call);
    fresh.push_back(std::move(call));
  }
  return fresh;
}

void GenerationJob::start() {
  std::weak_ptr<GenerationJob> weak = weak_from_this();
  auto bridge = ctx_.bridge;
  const Strand strand = session_->strand();
  std::vector<std::pair<engine::ValidRequest, engine::EngineInterface::OutputCallback>> reqs;
  for (size_t k = 0; k < choices_.size(); ++k) {
    const size_t p = k / size_t(parsed_.n);
    // Validated with the request (validate_generation); each choice gets its id and its seed.
    // Runs on the engine thread: hand the output to the strand and return at once.
    reqs.emplace_back(parsed_.requests.at(p).choice(choices_[k].engine_id, k),
                      [bridge, strand, weak](const protocol::RequestOutput& o) {
                        bridge->post(strand, [weak, o] {
                          if (auto job = weak.lock()) job->on_output(o);
                        });
                      });
  }
  try {
    ctx_.engine.submit_all(std::move(reqs));  // every choice starts in the same step
  } catch (const Error& e) {
    over_ = true;
    throw api_error_from_engine(e, ctx_.engine.ready());
  }
  if (!parsed_.stream) return;
  session_->stream_begin();
  if (meta_.chat) {  // OpenAI opens each chat choice with its role
    for (const auto& c : choices_) {
      ChunkPart part{.index = c.index, .role = "assistant", .content = ""};
      session_->stream_write(sse_event(stream_chunk(meta_, part, parsed_.include_usage)));
    }
  }
}

void GenerationJob::on_output(const protocol::RequestOutput& out) {
  if (over_) return;
  auto it = by_engine_id_.find(out.request_id);
  if (it == by_engine_id_.end()) return;
  ChoiceState& c = choices_[it->second];
  if (c.done()) return;
  if (out.finish == protocol::FinishReason::kError) {
    return fail("the engine failed request " + out.request_id + ": " + out.error);
  }
  if (out.finish == protocol::FinishReason::kAbort) {
    // Our own aborts happen only after abandon(); this one came from the engine (shutdown).
    return fail("request " + out.request_id + " was aborted by the engine");
  }
  if (out.prompt_tokens > 0) c.prompt_tokens = out.prompt_tokens;
  c.cached_tokens = out.cached_tokens;
  c.completion_tokens = out.completion_tokens;
  if (parsed_.stream) return on_stream_output(c, out);
  c.text += out.new_text;
  if (parsed_.logprobs)
    c.logprobs.insert(c.logprobs.end(), out.logprobs.begin(), out.logprobs.end());
  c.finish = out.finish;
  if (c.done() && parsers_[it->second]) {
    ToolCallUpdate u;
    parsers_[it->second]->feed(c.text, u);
    parsers_[it->second]->finish(u);
    take_calls(c, u);
  }
  if (!all_done()) return;
  over_ = true;
  auto session = std::move(session_);
  session->send_response(
      json_response(200, full_response(meta_, ctx_.engine.tokenizer(), choices_, usage())));
}

void GenerationJob::on_stream_output(ChoiceState& c, const protocol::RequestOutput& out) {
  const bool with_usage = parsed_.include_usage;
  bool ok = true;
  auto& parser = parsers_[size_t(c.index)];
  c.finish = out.finish;
  // With tool parsing, text that may open a call is held by the parser until it is decided.
  ToolCallUpdate u;
  if (parser) {
    parser->feed(out.new_text, u);
    if (c.done()) parser->finish(u);
  } else {
    u.content = out.new_text;
  }
  const std::vector<ToolCall> calls = parser ? take_calls(c, u) : std::vector<ToolCall>{};
  if (!u.content.empty() || (parsed_.logprobs && !out.logprobs.empty())) {
    ChunkPart part{.index = c.index, .content = u.content};
    if (parsed_.logprobs) {
      part.logprobs =
          meta_.chat ? chat_logprobs(ctx_.engine.tokenizer(), out.logprobs)
                     : completion_logprobs(ctx_.engine.tokenizer(), out.logprobs, c.text.size());
    }
    ok = session_->stream_write(sse_event(stream_chunk(meta_, part, with_usage)));
  }
  for (size_t i = 0; ok && i < calls.size(); ++i) {
    const int index = int(c.tool_calls.size() - calls.size() + i);
    const auto deltas = tool_call_deltas(calls[i], index);
    for (const auto& d : deltas) {  // OpenAI's shape: the call's head, then its arguments
      ChunkPart part{.index = c.index, .tool_calls = nlohmann::ordered_json::array({d})};
      if (ok) ok = session_->stream_write(sse_event(stream_chunk(meta_, part, with_usage)));
    }
  }
  c.text += out.new_text;
  if (ok && c.done()) {
    ChunkPart part{.index = c.index, .finish = c.finish, .made_tool_calls = !c.tool_calls.empty()};
    if (!meta_.chat) part.content = "";
    ok = session_->stream_write(sse_event(stream_chunk(meta_, part, with_usage)));
  }
  if (ok && all_done()) {
    if (with_usage) ok = session_->stream_write(sse_event(usage_chunk(meta_, usage())));
    if (ok) ok = session_->stream_write(sse_done());
    if (ok) {
      over_ = true;
      auto session = std::move(session_);
      session->stream_end("");
      return;
    }
  }
  if (!ok) {
    auto session = session_;  // drop_client() abandons us, which lets go of session_
    session->drop_client("the client fell " + std::to_string(ctx_.cfg.stream_buffer_bytes) +
                         " bytes behind the stream");
  }
}

void GenerationJob::fail(const std::string& message) {
  auto session = session_;
  abandon();  // aborts the other choices and marks us over
  if (!parsed_.stream) {
    session->send_response(error_response(ApiError(500, message)));
    return;
  }
  // Headers are out: report in-band, as vLLM does, then end the stream.
  session->stream_write(sse_event(error_json(500, message)));
  session->stream_write(sse_done());
  session->stream_end(message);
}

void GenerationJob::abandon() {
  if (!over_) {
    over_ = true;
    for (const auto& c : choices_) {
      if (!c.done()) ctx_.engine.abort(c.engine_id);
    }
  }
  session_.reset();
}

bool GenerationJob::all_done() const {
  for (const auto& c : choices_) {
    if (!c.done()) return false;
  }
  return true;
}

Usage GenerationJob::usage() const {
  Usage u;
  for (size_t k = 0; k < choices_.size(); ++k) {
    if (k % size_t(parsed_.n) == 0) {  // once per prompt
      u.prompt_tokens += choices_[k].prompt_tokens;
      u.cached_tokens += choices_[k].cached_tokens;
    }
    u.completion_tokens += choices_[k].completion_tokens;
  }
  return u;
}

}  // namespace tessera::server
