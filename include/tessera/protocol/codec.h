// Wire codec for the engine <-> worker-process boundary: ExecutePlan, ExecuteResult, the worker's
// Hello (model numbers) and error messages, as little-endian, length-prefixed frames
// (u32 payload length + u8 type + payload). Pure functions over byte buffers; no state. Decoding
// is bounds-checked: a truncated or corrupt buffer throws tessera::Error(kCorruptFile), never
// reads past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/protocol/step.h"

namespace tessera::protocol {

enum class FrameType : uint8_t {
  kHello = 1,      // worker -> engine: loaded, here are the numbers
  kError = 2,      // worker -> engine: loading or a step failed (code + message)
  kPlan = 3,       // engine -> worker
  kResult = 4,     // worker -> engine
  kShutdown = 5,   // engine -> worker: exit cleanly
  kHeartbeat = 6,  // worker -> engine: still alive (empty payload), sent between and during steps
  kAuth = 7,       // worker -> engine: the group's secret, the first frame on a control connection
};
// An auth frame holds a secret, nothing more: a first frame larger than this is refused unread.
inline constexpr uint32_t kMaxAuthPayload = 1024;

inline constexpr size_t kFrameHeaderSize = 5;
// Larger frames are treated as corruption (a plan for thousands of sequences is a few MiB).
inline constexpr uint32_t kMaxFramePayload = uint32_t{256} << 20;

struct WorkerHello {
  int32_t vocab_size = 0;
  int32_t max_position = 0;
  int32_t num_layers = 0;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t rank = 0;             // world rank in a worker group
  uint64_t weight_bytes = 0;    // this rank's shard
  uint64_t resident_bytes = 0;  // VmRSS after loading (weights touched + KV pool)
  uint64_t kv_bytes = 0;        // this rank's KV pool
  bool operator==(const WorkerHello&) const = default;
};

struct WorkerError {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

struct Frame {
  FrameType type = FrameType::kShutdown;
  std::vector<uint8_t> payload;
};

struct FrameHeader {
  uint32_t payload_size = 0;
  FrameType type = FrameType::kShutdown;
};

// Payload encoders/decoders (no frame header).
std::vector<uint8_t> encode_plan(const ExecutePlan& plan);
ExecutePlan decode_plan(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_result(const ExecuteResult& result);
ExecuteResult decode_result(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_hello(const WorkerHello& hello);
WorkerHello decode_hello(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_error(const WorkerError& error);
WorkerError decode_error(std::span<const uint8_t> payload);

// Whole frames: header + payload.
std::vector<uint8_t> encode_frame(FrameType type, std::span<const uint8_t> payload);
// Reads the 5-byte header; throws kCorruptFile on an unknown type or an oversized length.
FrameHeader decode_frame_header(std::span<const uint8_t> header);
// Decodes exactly one frame occupying the whole buffer; throws when truncated or padded.
Frame decode_frame(std::span<const uint8_t> bytes);

}  // namespace tessera::protocol
