// StoreServer: one thread polls the listening socket, every client and a wake-up pipe. Each client
// has at most one request in progress; a GET whose key is not set yet is parked on its connection
// (no reply, no further reads) until a SET provides the key or its deadline passes, so a waiting
// client costs nothing. A client that sends a bad frame (unknown op, a key over 4 KiB, a value over
// 64 MiB, a malformed GET/ADD) is disconnected; everyone else keeps going. With a secret, a
// connection's first request must be AUTH with that secret; anything else is answered
// "unauthorized" and the connection closed.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "store_protocol.h"
#include "tessera/comm/rendezvous.h"
#include "tessera/comm/tcp.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/core/secret.h"

namespace tessera::comm {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  std::vector<uint8_t> in;   // bytes of the request being read
  std::vector<uint8_t> out;  // reply not yet written
  size_t out_off = 0;
  bool authed = false;   // presented the secret (or the store has none)
  bool closing = false;  // close once `out` is written
  bool waiting = false;  // a GET parked until its key is set
  std::string wait_key;
  Clock::time_point wait_deadline;
  bool dead = false;
};

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

std::vector<uint8_t> response(wire::Status st, const uint8_t* data = nullptr, size_t n = 0) {
  std::vector<uint8_t> r(wire::kResponseHeader + n);
  r[0] = st;
  wire::put_u64(r.data() + 1, n);
  if (n) std::memcpy(r.data() + wire::kResponseHeader, data, n);
  return r;
}

}  // namespace

struct StoreServer::Impl {
  std::string host;
  std::string secret;
  int port = 0;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::atomic<bool> stop{false};
  mutable std::mutex mu;  // guards kv: the server thread and the coordinator's direct calls
  std::unordered_map<std::string, std::vector<uint8_t>> kv;
  std::list<Conn> conns;  // server thread only
  std::thread thread;

  void wake_up() {
    const char c = 1;
    [[maybe_unused]] auto n = ::write(wake[1], &c, 1);
  }

  void loop();
  void accept_all();
  void read_conn(Conn& c);
  void write_conn(Conn& c);
  void handle_requests(Conn& c);
  void serve_waiter(Conn& c, Clock::time_point now);
  bool complete_frame(const Conn& c) const;
};

StoreServer::StoreServer(const StoreServerParams& p) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.host = p.host;
  s.secret = p.secret;
  s.port = p.port;
  s.listen_fd = tcp::listen(p.host, s.port, "rendezvous store");
  if (::pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(s.listen_fd);
    fail(ErrorCode::kUnavailable, "rendezvous store: pipe: ", std::strerror(errno));
  }
  set_nonblocking(s.listen_fd);
  s.thread = std::thread([&s] { s.loop(); });
}

StoreServer::~StoreServer() {
  impl_->stop = true;
  impl_->wake_up();
  impl_->thread.join();
  for (Conn& c : impl_->conns) ::close(c.fd);
  ::close(impl_->listen_fd);
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

int StoreServer::port() const { return impl_->port; }

bool StoreServer::has(const std::string& key) const {
  std::lock_guard lk(impl_->mu);
  return impl_->kv.contains(key);
}

std::vector<uint8_t> StoreServer::value(const std::string& key) const {
  std::lock_guard lk(impl_->mu);
  auto it = impl_->kv.find(key);
  if (it == impl_->kv.end()) fail(ErrorCode::kNotFound, "rendezvous store: no key '", key, "'");
  return it->second;
}

void StoreServer::set(const std::string& key, const std::vector<uint8_t>& value) {
  {
    std::lock_guard lk(impl_->mu);
    impl_->kv[key] = value;
  }
  impl_->wake_up();  // a parked GET may be waiting for this key
}

void StoreServer::Impl::loop() {
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;
  while (!stop) {
    fds.clear();
    owners.clear();
    fds.push_back({wake[0], POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    int timeout_ms = -1;
    const auto now = Clock::now();
    for (Conn& c : conns) {
      short ev = 0;
      // Read only while there is room for the next request: one request at a time per client.
      if (!c.waiting && c.out.empty() && !complete_frame(c)) ev |= POLLIN;
      if (!c.out.empty()) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
      owners.push_back(&c);
      if (c.waiting) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(c.wait_deadline - now).count();
        ms = std::max<int64_t>(ms, 0);
        timeout_ms =
            timeout_ms < 0 ? static_cast<int>(ms) : std::min(timeout_ms, static_cast<int>(ms));
      }
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      TESSERA_LOG_ERROR("rendezvous store: poll failed; the store stops serving");
      return;
    }
    if (fds[0].revents) {
      char buf[64];
      while (::read(wake[0], buf, sizeof(buf)) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) accept_all();
    for (size_t i = 0; i < owners.size(); ++i) {
      Conn& c = *owners[i];
      const short re = fds[i + 2].revents;
      if (re & (POLLERR | POLLNVAL)) c.dead = true;
      if (!c.dead && (re & POLLOUT)) write_conn(c);
      if (!c.dead && (re & (POLLIN | POLLHUP))) read_conn(c);
    }
    const auto t = Clock::now();
    // Requests first, then parked GETs, so that a SET answers a waiter in the same pass.
    for (Conn& c : conns)
      if (!c.dead) handle_requests(c);
    for (Conn& c : conns)
      if (!c.dead && c.waiting) serve_waiter(c, t);
    for (Conn& c : conns)
      if (!c.dead && !c.out.empty()) write_conn(c);  // most replies fit the socket buffer at once
    for (Conn& c : conns)
      if (c.closing && c.out.empty()) c.dead = true;
    for (auto it = conns.begin(); it != conns.end();) {
      if (it->dead) {
        ::close(it->fd);
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void StoreServer::Impl::accept_all() {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conns.push_back(Conn{.fd = fd, .authed = secret.empty()});
  }
}

void StoreServer::Impl::read_conn(Conn& c) {
  uint8_t buf[65536];
  for (;;) {
    // Never read past the current frame: its header bounds what we hold for this client.
    size_t want = sizeof(buf);
    if (c.in.size() >= wire::kRequestHeader) {
      const size_t frame =
          wire::kRequestHeader + wire::get_u32(c.in.data() + 1) + wire::get_u64(c.in.data() + 5);
      if (c.in.size() >= frame) return;
      want = std::min(want, frame - c.in.size());
    } else {
      want = wire::kRequestHeader - c.in.size();
    }
    const ssize_t n = ::recv(c.fd, buf, want, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      c.dead = true;
      return;
    }
    if (n < 0) return;
    c.in.insert(c.in.end(), buf, buf + n);
    if (c.in.size() == wire::kRequestHeader) {
      const uint8_t op = c.in[0];
      const uint32_t klen = wire::get_u32(c.in.data() + 1);
      const uint64_t vlen = wire::get_u64(c.in.data() + 5);
      const bool ok = klen <= wire::kMaxKey && vlen <= wire::kMaxValue &&
                      (op == wire::kSet || ((op == wire::kGet || op == wire::kAdd) && vlen == 8) ||
                       (op == wire::kHas && vlen == 0) ||
                       (op == wire::kAuth && klen == 0 && vlen <= wire::kMaxSecret));
      if (!ok) {
        TESSERA_LOG_WARN("rendezvous store: closing a connection that sent a bad frame");
        c.dead = true;
        return;
      }
    }
  }
}

bool StoreServer::Impl::complete_frame(const Conn& c) const {
  if (c.in.size() < wire::kRequestHeader) return false;
  return c.in.size() >=
         wire::kRequestHeader + wire::get_u32(c.in.data() + 1) + wire::get_u64(c.in.data() + 5);
}

void StoreServer::Impl::write_conn(Conn& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.dead = true;
      return;
    }
    c.out_off += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_off = 0;
}

void StoreServer::Impl::serve_waiter(Conn& c, Clock::time_point now) {
  std::lock_guard lk(mu);
  auto it = kv.find(c.wait_key);
  if (it != kv.end()) {
    c.out = response(wire::kOk, it->second.data(), it->second.size());
  } else if (now >= c.wait_deadline) {
    c.out = response(wire::kTimeout);
  } else {
    return;
  }
  c.waiting = false;
}

void StoreServer::Impl::handle_requests(Conn& c) {
  if (c.waiting || !c.out.empty() || !complete_frame(c)) return;
  const uint8_t op = c.in[0];
  const uint32_t klen = wire::get_u32(c.in.data() + 1);
  const uint64_t vlen = wire::get_u64(c.in.data() + 5);
  const uint8_t* kp = c.in.data() + wire::kRequestHeader;
  std::string key(reinterpret_cast<const char*>(kp), klen);
  const uint8_t* vp = kp + klen;
  if (op == wire::kAuth || !c.authed) {
    const bool ok = op == wire::kAuth &&
                    secrets_equal(secret, std::string_view(reinterpret_cast<const char*>(vp), vlen));
    if (!ok) {
      TESSERA_LOG_WARN("rendezvous store: refused a connection: {}",
                       op == wire::kAuth ? "wrong group secret" : "no group secret presented");
      c.out = response(wire::kUnauthorized);
      c.closing = true;
    } else {
      c.authed = true;
      c.out = response(wire::kOk);
    }
    c.in.clear();
    return;
  }
  std::lock_guard lk(mu);
  switch (op) {
    case wire::kSet:
      kv[key].assign(vp, vp + vlen);
      c.out = response(wire::kOk);
      break;
    case wire::kGet: {
      auto it = kv.find(key);
      if (it != kv.end()) {
        c.out = response(wire::kOk, it->second.data(), it->second.size());
      } else {
        // Clamped to a day so that now() + ms cannot overflow the clock.
        const int64_t ms =
            std::clamp<int64_t>(static_cast<int64_t>(wire::get_u64(vp)), 0, int64_t{86'400'000});
        c.waiting = true;
        c.wait_key = std::move(key);
        c.wait_deadline = Clock::now() + std::chrono::milliseconds(ms);
      }
      break;
    }
    case wire::kAdd: {
      const auto delta = static_cast<int64_t>(wire::get_u64(vp));
      int64_t cur = 0;
      auto& v = kv[key];
      const char* b = reinterpret_cast<const char*>(v.data());
      if (!v.empty() && std::from_chars(b, b + v.size(), cur).ptr != b + v.size()) {
        c.out = response(wire::kBadRequest);
        break;
      }
      int64_t out = 0;
      if (__builtin_add_overflow(cur, delta, &out)) {  // found by fuzz_rendezvous_store
        c.out = response(wire::kBadRequest);
        break;
      }
      const std::string text = std::to_string(out);
      v.assign(text.begin(), text.end());
      c.out = response(wire::kOk, reinterpret_cast<const uint8_t*>(&out), sizeof(out));
      break;
    }
    case wire::kHas:
      c.out = response(kv.contains(key) ? wire::kOk : wire::kMissing);
      break;
  }
  c.in.clear();
}

}  // namespace tessera::comm
