// One validation of a generation request for both front ends (internal to the server module).
// The HTTP parser (openai_request.cpp) and the gRPC converter (grpc_convert.cpp) each turn their
// wire format into a ParsedGeneration and check only types. validate_generation checks the
// request's shape (how many prompts, n, stop strings, logit_bias entries, top_logprobs, the
// request's cost), then hands every prompt to the engine's one per-sequence validation
// (engine/request_check.h) before any is submitted, so the two front ends refuse the same
// requests with the same messages. Pure functions; no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/engine/request_check.h"
#include "tessera/server/openai_request.h"

namespace tessera::server {

using engine::FieldNamer;
using engine::NumberRange;
using engine::openai_field;
namespace ranges = engine::ranges;

// engine::check_range as ApiError(400, ..., param): parsers check a number as a double before
// narrowing it to float, so 1e300 gets a message with its range.
void check_param_range(const NumberRange& r, double v, FieldNamer name = openai_field);

// Every limit on a parsed request (see ParseContext for the numbers). Returns one ValidRequest
// per prompt (request_id and deadline unset). Throws ApiError(400) whose param is the OpenAI name
// and whose message starts with the front end's spelling of it.
std::vector<engine::ValidRequest> validate_generation(const ParsedGeneration& g,
                                                      const ParseContext& ctx,
                                                      FieldNamer name = openai_field);

// What a request costs the KV cache: the sum over its sequences (prompts x n) of prompt tokens
// plus max_tokens.
int64_t request_token_cost(const ParsedGeneration& g);

}  // namespace tessera::server
