#include "tessera/protocol/frame_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace tessera::protocol {
namespace {

using Clock = std::chrono::steady_clock;

enum class Fill { kOk, kEof, kTimeout };

// Fills `buf` completely, polling so that the deadline bounds the total wait.
Fill read_exact(int fd, uint8_t* buf, size_t n, std::optional<Clock::time_point> deadline) {
  size_t got = 0;
  while (got < n) {
    int wait_ms = -1;
    if (deadline) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) return Fill::kTimeout;
      wait_ms = static_cast<int>(std::min<long long>(left.count() + 1, 1 << 30));
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int pr = ::poll(&p, 1, wait_ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      fail(ErrorCode::kInternal, "poll on worker channel failed: ", std::strerror(errno));
    }
    if (pr == 0) continue;  // deadline re-checked above
    const ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return Fill::kEof;
      fail(ErrorCode::kInternal, "read on worker channel failed: ", std::strerror(errno));
    }
    if (r == 0) return Fill::kEof;
    got += static_cast<size_t>(r);
  }
  return Fill::kOk;
}

}  // namespace

void write_frame(int fd, FrameType type, std::span<const uint8_t> payload) {
  const std::vector<uint8_t> bytes = encode_frame(type, payload);
  size_t sent = 0;
  while (sent < bytes.size()) {
    // MSG_NOSIGNAL: a dead peer is an error to report, not a SIGPIPE that kills the engine.
    const ssize_t w = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(ErrorCode::kInternal, "write on worker channel failed: ", std::strerror(errno));
    }
    sent += static_cast<size_t>(w);
  }
}

ReadOutcome read_frame(int fd, double timeout_seconds, uint32_t max_payload) {
  std::optional<Clock::time_point> deadline;
  if (timeout_seconds > 0)
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(timeout_seconds));
  auto status = [](Fill f) { return f == Fill::kEof ? ReadStatus::kEof : ReadStatus::kTimeout; };
  uint8_t header[kFrameHeaderSize];
  if (Fill f = read_exact(fd, header, sizeof header, deadline); f != Fill::kOk)
    return {status(f), {}};
  const FrameHeader h = decode_frame_header(header);
  if (h.payload_size > max_payload)
    fail(ErrorCode::kCorruptFile, "frame header: payload of ", h.payload_size,
         " bytes where at most ", max_payload, " are expected");
  ReadOutcome out;
  out.frame.type = h.type;
  out.frame.payload.resize(h.payload_size);
  if (Fill f = read_exact(fd, out.frame.payload.data(), h.payload_size, deadline); f != Fill::kOk)
    return {status(f), {}};
  return out;
}

}  // namespace tessera::protocol
