// One validation of a generation request for both front ends (internal to the server module).
// The HTTP parser (openai_request.cpp) and the gRPC converter (grpc_convert.cpp) each turn their
// wire format into a ParsedGeneration and check only types; every limit (ranges, counts, sizes,
// token ids, context length, and the request's cost) lives here once, so the two front ends
// refuse the same requests with the same messages. Pure functions; no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/server/openai_request.h"

namespace tessera::server {

// A numeric request parameter's valid range, named by its OpenAI spelling.
struct NumberRange {
  std::string_view param;
  double lo;
  double hi;
  bool lo_open = false;  // (lo, hi] instead of [lo, hi]
};

namespace ranges {
inline constexpr NumberRange kTemperature{"temperature", 0.0, 2.0};
inline constexpr NumberRange kTopP{"top_p", 0.0, 1.0, true};
inline constexpr NumberRange kMinP{"min_p", 0.0, 1.0};
inline constexpr NumberRange kPresencePenalty{"presence_penalty", -2.0, 2.0};
inline constexpr NumberRange kFrequencyPenalty{"frequency_penalty", -2.0, 2.0};
inline constexpr NumberRange kRepetitionPenalty{"repetition_penalty", 0.0, 10.0, true};
inline constexpr NumberRange kLogitBias{"logit_bias", -100.0, 100.0};
}  // namespace ranges

// How a front end spells a parameter in its messages: HTTP uses the OpenAI name as is, gRPC its
// field path ("temperature" -> "sampling.temperature").
using FieldNamer = std::string (*)(std::string_view param);
std::string openai_field(std::string_view param);

// Throws ApiError(400, "<field> = <v> is out of range: must be in [lo, hi]", param).
void check_range(const NumberRange& r, double v, FieldNamer name = openai_field);

// Every limit on a parsed request (see ParseContext for the numbers). Throws ApiError(400) whose
// param is the OpenAI name and whose message starts with the front end's spelling of it.
void validate_generation(const ParsedGeneration& g, const ParseContext& ctx,
                         FieldNamer name = openai_field);

// What a request costs the KV cache: the sum over its sequences (prompts x n) of prompt tokens
// plus max_tokens.
int64_t request_token_cost(const ParsedGeneration& g);

}  // namespace tessera::server
