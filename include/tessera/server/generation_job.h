// GenerationJob: one chat/completions request in flight (internal to the server module). It
// submits one engine request per choice (prompts x n), gathers the engine's outputs on the
// session's strand and answers with one JSON body or an SSE stream. Owned by its Session while
// running; engine callbacks hold only a weak reference and post through the OutputBridge.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/server/openai_request.h"
#include "tessera/server/openai_response.h"
#include "tessera/server/server_context.h"

namespace tessera::server {

class Session;

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  GenerationJob(ServerContext& ctx, std::shared_ptr<Session> session, ParsedGeneration parsed);

  // Strand. Submits every choice; on a refusal aborts those already queued and throws ApiError.
  void start();
  void on_output(const protocol::RequestOutput& out);  // strand
  // Strand (or after the io threads joined): aborts unfinished engine requests and lets go of
  // the session; later outputs are dropped.
  void abandon();

 private:
  void on_stream_output(ChoiceState& c, const protocol::RequestOutput& out);
  // Tool parsing: takes what the choice's parser released into `c` (ids given, calls past the
  // first dropped without parallel_tool_calls); returns the calls that are new.
  std::vector<ToolCall> take_calls(ChoiceState& c, ToolCallUpdate& u);
  void fail(const std::string& message);
  bool all_done() const;
  Usage usage() const;

  ServerContext& ctx_;
  std::shared_ptr<Session> session_;
  ParsedGeneration parsed_;
  ResponseMeta meta_;
  std::vector<ChoiceState> choices_;
  std::vector<std::optional<ToolCallParser>> parsers_;  // per choice, when tools are parsed
  std::unordered_map<std::string, size_t> by_engine_id_;
  bool over_ = false;  // answered, failed or abandoned
};

}  // namespace tessera::server
