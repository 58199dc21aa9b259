// bench client: one streamed request to an OpenAI-compatible server (Tessera, vLLM, llama.cpp's
// server, TGI) over plain HTTP/1.1 (no TLS), timed chunk by chunk. A StreamCall lives on the
// caller's io_context, runs only on that context's thread and reports exactly once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tessera/bench/metrics.h"
#include "tessera/bench/workload.h"

namespace tessera::bench {

enum class Endpoint { kChat, kCompletions };
Endpoint parse_endpoint(const std::string& name);  // "chat" | "completions"
const char* endpoint_name(Endpoint e);

struct Target {
  std::string host = "127.0.0.1";
  std::string port = "80";
  std::string path = "/v1/chat/completions";  // the full request target
  std::string model;
  Endpoint endpoint = Endpoint::kChat;
  std::string api_key;  // sent as a Bearer token when set
  double temperature = 0.0;
  // Ask for exactly max_tokens (vLLM, Tessera); plain OpenAI rejects it, hence the switch.
  bool ignore_eos = true;
  nlohmann::json extra_body = nlohmann::json::object();  // merged into every request body
};

// "http://host:port[/prefix]" (a trailing /v1 is fine); https is refused: this client speaks
// plain HTTP only.
Target make_target(const std::string& base_url, Endpoint endpoint, const std::string& model);
std::string request_body(const Target& t, const RequestSpec& spec);

// Splits an SSE byte stream into the payloads of its `data:` lines (any chunking, \n or \r\n).
class SseParser {
 public:
  template <typename F>
  void feed(std::string_view bytes, F&& on_data) {
    buf_.append(bytes);
    size_t start = 0, nl;
    while ((nl = buf_.find('\n', start)) != std::string::npos) {
      std::string_view line(buf_.data() + start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.substr(0, 5) == "data:") {
        line.remove_prefix(5);
        if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        on_data(line);
      }
      start = nl + 1;
    }
    buf_.erase(0, start);
  }

 private:
  std::string buf_;
};

// One request in flight. Implemented in client.cpp; all its work runs on the io_context's thread.
class StreamCall {
 public:
  using Done = std::function<void(RequestRecord)>;
  virtual ~StreamCall() = default;
  // Sends `spec` now. `record` carries the fields the caller fills (index, times, warmup);
  // `done` runs once, on the io_context's thread, when the stream ends, fails or times out.
  static std::shared_ptr<StreamCall> start(boost::asio::io_context& ioc,
                                           const boost::asio::ip::tcp::resolver::results_type& eps,
                                           const Target& target, const RequestSpec& spec,
                                           RequestRecord record, double timeout_s, Done done);
  // Ends the call now with error `kind` (e.g. "cancelled") unless it already ended. Call it on the
  // io_context's thread.
  virtual void cancel(const std::string& kind) = 0;
};

}  // namespace tessera::bench
