// A small blocking HTTP client for the server tests (Beast over a plain socket), plus helpers to
// split an SSE body into its `data:` payloads.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tessera::server::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class Client {
 public:
  explicit Client(int port) : sock_(ioc_) {
    sock_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
  }
  HttpResult request(http::verb method, const std::string& target, const std::string& body = "",
                     const Headers& headers = {}) {
    send(method, target, body, headers);
    return read();
  }
  void send(http::verb method, const std::string& target, const std::string& body = "",
            const Headers& headers = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty() || method == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    for (const auto& [k, v] : headers) req.set(k, v);
    req.prepare_payload();
    http::write(sock_, req);
  }
  HttpResult read() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(sock_, buf_, parser);
    HttpResult r;
    const auto& res = parser.get();
    r.status = res.result_int();
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(f.value());
    }
    r.body = res.body();
    return r;
  }
  tcp::socket& socket() { return sock_; }

 private:
  net::io_context ioc_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

inline HttpResult get(int port, const std::string& target, const Headers& h = {}) {
  return Client(port).request(http::verb::get, target, "", h);
}
inline HttpResult post(int port, const std::string& target, const nlohmann::json& body,
                       const Headers& h = {}) {
  return Client(port).request(http::verb::post, target, body.dump(), h);
}
inline HttpResult post_raw(int port, const std::string& target, const std::string& body,
                           const Headers& h = {}) {
  return Client(port).request(http::verb::post, target, body, h);
}

// The payloads of `data: ...` events, in order ("[DONE]" included as is).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(pos, end - pos);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    pos = end + 2;
  }
  return out;
}

}  // namespace tessera::server::testing
