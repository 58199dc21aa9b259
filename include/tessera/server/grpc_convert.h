// gRPC API (server module): conversions between the tessera.v1 protobuf messages and the
// engine's protocol structs, with the request validation. Stateless functions; callers own every
// value. Only compiled with gRPC (TESSERA_HAVE_GRPC), as it includes the generated headers.
#pragma once

#include <grpcpp/support/status.h>

#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/protocol/request.h"
#include "tessera/tokenizer/chat_template.h"
#include "tessera/tokenizer/tokenizer.h"
#include "tessera/v1/generate.pb.h"

namespace tessera::server::rpc {

namespace pb = ::tessera::v1;

// Fills req.sampling / req.stopping from the option messages. Unset optional fields keep the
// protocol defaults. Throws tessera::Error(kInvalidArgument) whose message starts with the field
// path ("sampling.top_p: ..."); `vocab_size` bounds token ids in logit_bias and stop_token_ids.
void apply_options(const pb::SamplingOptions& sampling, const pb::StoppingOptions& stopping,
                   const pb::OutputOptions& output, int vocab_size,
                   protocol::GenerationRequest& req);

// The whole GenerateRequest: prompt ids from `text` (tokenized) or `tokens` (checked against the
// vocabulary), options, priority. request_id is copied as is (the caller assigns empty ones).
protocol::GenerationRequest to_generation_request(const pb::GenerateRequest& in,
                                                  const tokenizer::Tokenizer& tok);

// The prompt text for a ChatRequest: messages (and tools_json) through the chat template.
std::string render_chat(const pb::ChatRequest& in, const tokenizer::ChatTemplate& tmpl);

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
