#include "tessera/server/sse.h"

#include <cstdio>

#include "tessera/server/api_error.h"

namespace tessera::server {

std::string sse_response_head(bool http11, bool keep_alive) {
  std::string h = http11 ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.0 200 OK\r\n";
  h += "Content-Type: text/event-stream; charset=utf-8\r\n";
  h += "Cache-Control: no-cache\r\n";
  h += "X-Accel-Buffering: no\r\n";  // proxies must not hold the stream back
  if (http11) h += "Transfer-Encoding: chunked\r\n";
  h += (http11 && keep_alive) ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  h += "\r\n";
  return h;
}

std::string sse_event(const nlohmann::ordered_json& data) {
  return "data: " + dump_json(data) + "\n\n";
}

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string http_chunk(std::string_view data) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

std::string http_last_chunk() { return "0\r\n\r\n"; }

}  // namespace tessera::server
