// A small OpenAI-style streaming server for the bench tests: raw sockets on 127.0.0.1, one thread
// per connection, tokens sent on an absolute schedule (first after first_ms, then every gap_ms)
// so the client's measurements can be checked against known gaps. Can also fail on purpose.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace tessera::bench::testing {

struct Behavior {
  enum Kind { kStream, kHttpError, kStall, kCloseMidStream, kErrorEvent } kind = kStream;
  int first_ms = 200, gap_ms = 50, tokens = 5;
  bool usage = true;
  int64_t usage_prompt = 7;
  int64_t usage_completion = -1;  // -1: = tokens
  bool done = true;               // send data: [DONE]
  int status = 500;
};

struct SeenRequest {
  std::string head, body;
};

class FakeServer {
 public:
  explicit FakeServer(std::function<Behavior(int)> behave) : behave_(std::move(behave)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 128);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  explicit FakeServer(Behavior b) : FakeServer([b](int) { return b; }) {}
  ~FakeServer() {
    stop_ = true;
    acceptor_.join();
    ::close(fd_);
    std::vector<std::thread> conns;
    {
      std::lock_guard lk(mu_);
      conns.swap(conns_);
    }
    for (auto& t : conns) t.join();
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<SeenRequest> seen() {
    std::lock_guard lk(mu_);
    return seen_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::lock_guard lk(mu_);
      conns_.emplace_back([this, c, n = count_++] { serve(c, n); });
    }
  }

  static bool send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += size_t(n);
    }
    return true;
  }
  static std::string chunk(const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + data + "\r\n";
  }
  static std::string event(const nlohmann::json& j) { return chunk("data: " + j.dump() + "\n\n"); }

  // Waits until the test ends or the client hangs up.
  void stall(int c) {
    char b;
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 10) > 0 && ::recv(c, &b, 1, MSG_DONTWAIT) == 0) return;
    }
  }

  void serve(int c, int n) {
    std::string req;
    char buf[4096];
    size_t body_at = std::string::npos, need = 0;
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const ssize_t r = ::recv(c, buf, sizeof buf, 0);
      if (r <= 0) break;
      req.append(buf, size_t(r));
      if (body_at == std::string::npos && (body_at = req.find("\r\n\r\n")) != std::string::npos) {
        body_at += 4;
        const auto cl = req.find("Content-Length: ");
        need = cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16));
      }
      if (body_at != std::string::npos && req.size() >= body_at + need) break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const std::string head = body_at == std::string::npos ? req : req.substr(0, body_at);
    const std::string body = body_at == std::string::npos ? "" : req.substr(body_at);
    {
      std::lock_guard lk(mu_);
      seen_.push_back({head, body});
    }
    const bool chat = head.find("/chat/completions") != std::string::npos;
    const Behavior b = behave_(n);
    if (b.kind == Behavior::kHttpError) {
      const std::string err = R"({"error":{"message":"boom","type":"server_error","code":)" +
                              std::to_string(b.status) + "}}";
      send_all(c, "HTTP/1.1 " + std::to_string(b.status) +
                      " Oops\r\nContent-Type: application/json\r\n" +
                      "Content-Length: " + std::to_string(err.size()) + "\r\n\r\n" + err);
      ::close(c);
      return;
    }
    send_all(c,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
             "Connection: close\r\n\r\n");
    const auto tok = [&](int k) {
      nlohmann::json choice = {{"index", 0}, {"finish_reason", nullptr}};
      if (chat)
        choice["delta"] = {{"content", "t" + std::to_string(k)}};
      else
        choice["text"] = "t" + std::to_string(k);
      return event(
          {{"object", chat ? "chat.completion.chunk" : "text_completion"}, {"choices", {choice}}});
    };
    int sent = 0;
    for (int k = 0; k < b.tokens && !stop_; ++k) {
      if ((b.kind == Behavior::kStall || b.kind == Behavior::kErrorEvent) && k == 1) break;
      if (b.kind == Behavior::kCloseMidStream && k == 2) break;
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(b.first_ms + k * b.gap_ms));
      if (!send_all(c, tok(k))) break;
      ++sent;
    }
    if (b.kind == Behavior::kStall) {
      stall(c);
    } else if (b.kind == Behavior::kCloseMidStream) {
      // no last chunk, no [DONE]: the connection just ends
    } else if (b.kind == Behavior::kErrorEvent) {
      send_all(c, event({{"error", {{"message", "engine died"}, {"type", "server_error"}}}}));
      send_all(c, chunk("data: [DONE]\n\n") + "0\r\n\r\n");
    } else {
      nlohmann::json fin = {{"index", 0}, {"finish_reason", "length"}};
      if (chat)
        fin["delta"] = nlohmann::json::object();
      else
        fin["text"] = "";
      send_all(c, event({{"choices", {fin}}}));
      if (b.usage) {
        const int64_t comp = b.usage_completion >= 0 ? b.usage_completion : sent;
        send_all(c, event({{"choices", nlohmann::json::array()},
                           {"usage",
                            {{"prompt_tokens", b.usage_prompt},
                             {"completion_tokens", comp},
                             {"total_tokens", b.usage_prompt + comp}}}}));
      }
      if (b.done) send_all(c, chunk("data: [DONE]\n\n"));
      send_all(c, "0\r\n\r\n");
    }
    ::shutdown(c, SHUT_RDWR);
    ::close(c);
  }

  std::function<Behavior(int)> behave_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
  std::vector<SeenRequest> seen_;
  int count_ = 0;
};

}  // namespace tessera::bench::testing
