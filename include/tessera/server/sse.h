// Server-sent events over HTTP/1.1 chunked transfer (internal to the server module): the stream's
// response head, `data: ...` events and the chunk framing around them. Pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tessera::server {

// The 200 response head of an event stream. HTTP/1.0 clients get no chunking and a close.
std::string sse_response_head(bool http11, bool keep_alive);
std::string sse_event(const nlohmann::ordered_json& data);  // "data: {...}\n\n"
std::string sse_done();                                     // "data: [DONE]\n\n"
// Wraps bytes as one HTTP/1.1 chunk; the empty last chunk ends the body.
std::string http_chunk(std::string_view data);
std::string http_last_chunk();

}  // namespace tessera::server
