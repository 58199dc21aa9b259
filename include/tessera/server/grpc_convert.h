// gRPC API (server module): conversions between the tessera.v1 protobuf messages and the
// engine's protocol structs, with the request validation. Stateless functions; callers own every
// value. Only compiled with gRPC (TESSERA_HAVE_GRPC), as it includes the generated headers.
#pragma once

#include <grpcpp/support/status.h>

#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/protocol/request.h"
#include "tessera/server/openai_request.h"
#include "tessera/server/tool_calls.h"
#include "tessera/server/tool_request.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/tokenizer/tokenizer.h"
#include "tessera/v1/generate.pb.h"

namespace tessera::server::rpc {

namespace pb = ::tessera::v1;

// How gRPC spells a request parameter in its messages ("temperature" -> "sampling.temperature").
std::string grpc_field(std::string_view param);

// A GenerateRequest as an engine request: prompt ids from `text` (tokenized) or `tokens` (checked
// against the vocabulary), options, priority; then the validation HTTP uses too
// (request_validation.h). Throws tessera::Error(kInvalidArgument) whose message starts with the
// field path ("sampling.top_p = 0 is out of range: ..."). request_id is copied as is.
engine::ValidRequest to_generation_request(const pb::GenerateRequest& in,
                                           const ParseContext& pc);
// A ChatRequest the same way: messages (and tools_json) through the shared chat rendering;
// tools_json / tool_choice_json / parallel_tool_calls as HTTP's tools fields (tool_request.h),
// whose result goes to `tools` when given.
engine::ValidRequest chat_to_generation_request(const pb::ChatRequest& in, const ParseContext& pc,
                                                ToolRequest* tools = nullptr);
// Puts the calls parsed from a Chat's output (and the text outside them) into its Complete
// message, with ids `id_prefix` + index; finish_reason becomes TOOL_CALLS when it was STOP.
void add_tool_calls(const ToolCallUpdate& parsed, const std::string& id_prefix,
                    pb::GenerateResponse& last);

// One engine output as stream messages: a Chunk when it carries tokens or text, then Complete or
// Error when it is the last one.
void append_responses(const protocol::RequestOutput& out, bool skip_text,
                      std::vector<pb::GenerateResponse>& dst);

// tessera::Error -> gRPC status: kInvalidArgument / kOutOfRange -> INVALID_ARGUMENT,
// kResourceExhausted -> RESOURCE_EXHAUSTED, kNotFound -> NOT_FOUND, else INTERNAL.
grpc::Status to_status(const Error& e);

// Request ids travel in logs and metrics: printable ASCII, at most 256 bytes.
bool valid_request_id(const std::string& id);

}  // namespace tessera::server::rpc
