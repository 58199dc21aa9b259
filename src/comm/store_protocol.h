// Wire format of the rendezvous store (private to src/comm). Little-endian, one request frame per
// call and one response frame per request:
//   request:  u8 op | u32 key_len | u64 value_len | key | value
//   response: u8 status | u64 value_len | value
// GET carries its timeout (i64 milliseconds) as its value; ADD carries its delta (i64); AUTH (the
// first request of a connection to a store that has a secret) carries the secret. Counters
// are stored as decimal text so that get_string() reads them. Sizes are bounded so that garbage
// from a stray connection is rejected from its header, before anything is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tessera::comm::wire {

enum Op : uint8_t { kSet = 1, kGet = 2, kAdd = 3, kHas = 4, kAuth = 5 };
enum Status : uint8_t { kOk = 0, kMissing = 1, kTimeout = 2, kBadRequest = 3, kUnauthorized = 4 };
inline constexpr uint64_t kMaxSecret = 1024;

inline constexpr size_t kRequestHeader = 1 + 4 + 8;
inline constexpr size_t kResponseHeader = 1 + 8;
inline constexpr size_t kMaxKey = 4096;
inline constexpr uint64_t kMaxValue = 64ull << 20;

inline void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace tessera::comm::wire
