// The shared-memory segment of one intra-node communicator group (private to src/comm): its
// layout (a header, one control block per rank, two data slots per rank), creating it on rank 0
// and mapping it on the others through the rendezvous store, and the waiting primitive (bounded
// spinning with _mm_pause, then a futex wait in short slices).
//
// Ownership: each rank's ShmSegment owns its mapping (unmapped in the destructor). The name in
// /dev/shm is unlinked as soon as every rank has mapped it (by the last rank to map), and again,
// idempotently, by rank 0's destructor and on every connect failure, so no entry outlives the
// group. The control words are shared by all ranks: rank r writes only its own block; any rank
// may raise the group-wide abort word.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/comm/groups.h"

namespace tessera::comm::shm {

constexpr int kMaxRanks = 64;

// Rank r's control block, alone on its cache line. `seq` is the last collective step whose data
// rank r has published (wrapping 32-bit; compare with seq_reached). `waiters` counts ranks
// asleep on `seq` (the publisher skips the futex wake when it is 0). `pid` is rank r's process
// while its communicator lives, 0 once it has been destroyed.
struct alignas(64) RankCtl {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> waiters;
  std::atomic<int32_t> pid;
};

struct alignas(64) Header {
  uint64_t magic;
  uint32_t size;
  uint32_t slot_bytes;
  // 0, or encode_abort(rank that gave up on the group, why); peers then fail fast.
  std::atomic<uint32_t> abort;
  RankCtl ranks[kMaxRanks];
};

enum class AbortWhy : uint32_t { kTimeout = 1, kLostPeer = 2 };
inline uint32_t encode_abort(int rank, AbortWhy why) {
  return static_cast<uint32_t>(rank + 1) | (static_cast<uint32_t>(why) << 16);
}
inline int abort_rank(uint32_t word) { return static_cast<int>(word & 0xffffu) - 1; }
inline AbortWhy abort_why(uint32_t word) { return static_cast<AbortWhy>(word >> 16); }

// Has `seq` reached `target` (both wrapping counters less than 2^31 apart)?
inline bool seq_reached(uint32_t seq, uint32_t target) {
  return static_cast<int32_t>(seq - target) >= 0;
}

class ShmSegment {
 public:
  // Rank 0 creates and publishes the segment's name under "<group>/shm/segment"; the others map
  // it. Every rank counts itself in "<group>/shm/mapped"; the last one unlinks the name and
  // publishes "<group>/shm/ready", which every rank waits for. Throws tessera::Error naming the
  // group and rank (kUnavailable, or kDeadlineExceeded past `deadline`).
  static std::unique_ptr<ShmSegment> connect(const GroupParams& p,
                                             std::chrono::steady_clock::time_point deadline);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  Header& header() { return *hdr_; }
  RankCtl& ctl(int r) { return hdr_->ranks[r]; }
  size_t slot_bytes() const { return slot_bytes_; }
  // Rank r's data slot for step `seq` (two slots per rank, alternating).
  uint8_t* slot(int r, uint32_t seq) {
    return data_ + (static_cast<size_t>(r) * 2 + (seq & 1u)) * slot_bytes_;
  }
  const std::string& name() const { return name_; }

  // Makes rank r's step `seq` visible and wakes any rank asleep on it.
  void publish(int r, uint32_t seq);
  // Raises the abort word (first caller wins) and wakes every sleeper.
  void raise_abort(int r, AbortWhy why);

 private:
  ShmSegment() = default;
  std::string name_;
  bool creator_ = false;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  size_t slot_bytes_ = 0;
  Header* hdr_ = nullptr;
  uint8_t* data_ = nullptr;
};

// Sleeps on `word` while it still holds `expected`, at most `slice` (FUTEX_WAIT on a shared
// mapping); returns early on a wake, a signal or a changed value.
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, std::chrono::microseconds slice);
void futex_wake_all(std::atomic<uint32_t>& word);

// Is process `pid` gone or a zombie (it can no longer publish)?
bool process_dead(int pid);

}  // namespace tessera::comm::shm
