// Blocking frame I/O over a stream socket (the engine <-> worker-process channel). The caller
// owns the file descriptor; these functions keep no state. Writes never raise SIGPIPE.
#pragma once

#include <optional>
#include <span>

#include "tessera/protocol/codec.h"

namespace tessera::protocol {

enum class ReadStatus { kOk, kEof, kTimeout };

struct ReadOutcome {
  ReadStatus status = ReadStatus::kOk;
  Frame frame;  // valid when status == kOk
};

// Writes one whole frame. Throws Error(kInternal) when the peer is gone or the write fails.
void write_frame(int fd, FrameType type, std::span<const uint8_t> payload);

// Reads one frame. timeout_seconds <= 0 waits forever; the timeout covers the whole frame. EOF
// (the peer closed or died) and timeouts are reported, not thrown; a corrupt header, or a payload
// over max_payload (checked before anything is allocated), throws Error(kCorruptFile) and an I/O
// error throws Error(kInternal).
ReadOutcome read_frame(int fd, double timeout_seconds, uint32_t max_payload = kMaxFramePayload);

}  // namespace tessera::protocol
