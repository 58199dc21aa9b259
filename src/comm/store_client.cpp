// StoreClient: one blocking TCP connection to the StoreServer, one request at a time. A GET's wait
// happens on the server (the request is parked there); the client only bounds its own read by the
// same timeout plus slack so that a dead server is noticed instead of waited on forever.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "store_protocol.h"
#include "tessera/comm/rendezvous.h"
#include "tessera/comm/tcp.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kReplySlackSeconds =
    10.0;  // server-side waits end first; this catches a dead server

}  // namespace

struct StoreClient::Impl {
  int fd = -1;
  std::string where;  // host:port, for messages

  [[noreturn]] void lost(const std::string& what) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    fail(ErrorCode::kUnavailable, "rendezvous store at ", where, ": ", what);
  }

  void write_all(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) lost(std::string("connection lost while sending: ") + std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  void read_all(uint8_t* p, size_t n, Clock::time_point deadline) {
    while (n > 0) {
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (ms <= 0) lost("no reply (is the server alive?)");
      pollfd pfd{fd, POLLIN, 0};
      const int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) continue;  // timeout: re-checked above
      const ssize_t r = ::recv(fd, p, n, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) lost("connection closed by the server");
      p += r;
      n -= static_cast<size_t>(r);
    }
  }

  // One round trip; returns the status and fills `value`.
  wire::Status call(wire::Op op, const std::string& key, const uint8_t* v, size_t vlen,
                    std::vector<uint8_t>* value, double reply_timeout_s) {
    if (fd < 0) lost("the connection was lost earlier");
    if (key.size() > wire::kMaxKey)
      fail(ErrorCode::kInvalidArgument, "rendezvous store: key of ", key.size(), " bytes (max ",
           wire::kMaxKey, ")");
    if (vlen > wire::kMaxValue)
      fail(ErrorCode::kInvalidArgument, "rendezvous store: value of ", vlen, " bytes for '", key,
           "' (max ", wire::kMaxValue, ")");
    uint8_t hdr[wire::kRequestHeader];
    hdr[0] = op;
    wire::put_u32(hdr + 1, static_cast<uint32_t>(key.size()));
    wire::put_u64(hdr + 5, vlen);
    write_all(hdr, sizeof(hdr));
    write_all(reinterpret_cast<const uint8_t*>(key.data()), key.size());
    if (vlen) write_all(v, vlen);
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(reply_timeout_s));
    uint8_t rh[wire::kResponseHeader];
    read_all(rh, sizeof(rh), deadline);
    const uint64_t n = wire::get_u64(rh + 1);
    if (n > wire::kMaxValue) lost("reply of " + std::to_string(n) + " bytes: not a Tessera store?");
    std::vector<uint8_t> buf(n);
    if (n) read_all(buf.data(), n, deadline);
    if (rh[0] == wire::kUnauthorized)
      lost(op == wire::kAuth ? "it refused this process's group secret (is TESSERA_GROUP_SECRET "
                               "the same on every node?)"
                             : "it requires the group's secret and this process presented none");
    if (value) *value = std::move(buf);
    return static_cast<wire::Status>(rh[0]);
  }
};

StoreClient::StoreClient(const StoreClientParams& p) : impl_(std::make_unique<Impl>()) {
  impl_->where = p.host + ":" + std::to_string(p.port);
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(p.connect_timeout_seconds));
  std::string why;
  for (;;) {
    impl_->fd = tcp::try_connect(p.host, p.port, why);
    if (impl_->fd >= 0) break;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server may not listen yet
  }
  if (impl_->fd < 0)
    fail(ErrorCode::kUnavailable, "no rendezvous store answers at ", impl_->where, " within ",
         p.connect_timeout_seconds, " s (", why, ")");
  if (p.secret.empty()) return;
  const auto* s = reinterpret_cast<const uint8_t*>(p.secret.data());
  if (impl_->call(wire::kAuth, "", s, p.secret.size(), nullptr, kReplySlackSeconds) != wire::kOk)
    impl_->lost("it did not accept the group secret");
}

StoreClient::~StoreClient() {
  if (impl_->fd >= 0) ::close(impl_->fd);
}

void StoreClient::set(const std::string& key, const std::vector<uint8_t>& value) {
  if (impl_->call(wire::kSet, key, value.data(), value.size(), nullptr, kReplySlackSeconds) !=
      wire::kOk)
    impl_->lost("SET '" + key + "' was refused");
}

std::vector<uint8_t> StoreClient::get(const std::string& key, double timeout_seconds) {
  const double t = std::isfinite(timeout_seconds) ? std::max(timeout_seconds, 0.0) : 1e9;
  uint8_t ms[8];
  wire::put_u64(ms, static_cast<uint64_t>(std::llround(t * 1000.0)));
  std::vector<uint8_t> value;
  const wire::Status st =
      impl_->call(wire::kGet, key, ms, sizeof(ms), &value, t + kReplySlackSeconds);
  if (st == wire::kTimeout)
    fail(ErrorCode::kDeadlineExceeded, "rendezvous store at ", impl_->where, ": key '", key,
         "' was not set within ", timeout_seconds, " s");
  if (st != wire::kOk) impl_->lost("GET '" + key + "' was refused");
  return value;
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  uint8_t d[8];
  wire::put_u64(d, static_cast<uint64_t>(delta));
  std::vector<uint8_t> value;
  const wire::Status st = impl_->call(wire::kAdd, key, d, sizeof(d), &value, kReplySlackSeconds);
  if (st == wire::kBadRequest)
    fail(ErrorCode::kInvalidArgument, "rendezvous store: key '", key,
         "' does not hold a counter, or adding ", delta, " would overflow it");
  if (st != wire::kOk || value.size() != 8) impl_->lost("ADD '" + key + "' was refused");
  return static_cast<int64_t>(wire::get_u64(value.data()));
}

bool StoreClient::has(const std::string& key) {
  return impl_->call(wire::kHas, key, nullptr, 0, nullptr, kReplySlackSeconds) == wire::kOk;
}

}  // namespace tessera::comm
