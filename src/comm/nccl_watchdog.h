// The NCCL engine's watchdog (nccl_communicator.cpp): NCCL ops are only enqueued on a stream by
// the calling thread, which does not wait for them; each op's completion event goes to this
// watchdog, whose one thread polls the oldest event and NCCL's async error. An op that has not
// completed by its deadline, or an NCCL error, aborts the communicator from the watchdog's thread
// (ncclCommAbort also releases kernels stuck waiting for a missing peer, so the stream drains) and
// is kept as the group's failure: the next op, Work::wait or synchronize() throws it. The
// watchdog owns its thread, queue and events; the communicator owns the watchdog.
#pragma once

#if TESSERA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "tessera/core/error.h"

namespace tessera::comm::detail {

struct NcclFailure {
  ErrorCode code;
  std::string message;  // "group G: OP on rank R timed out after ..."
};

class NcclWatchdog {
 public:
  using Clock = std::chrono::steady_clock;
  // `who` names the group and rank in failure messages ("group tp: ... on rank 1").
  NcclWatchdog(ncclComm_t comm, int device, std::string group, int rank, double timeout_seconds);
  ~NcclWatchdog();  // stops the thread (after the queue drains or fails), destroys the events
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  // Records an event on `stream` after the op just enqueued there and watches it until it
  // completes, NCCL reports an error, or `deadline`. Throws kUnavailable when no event can be made.
  void watch(const char* op, cudaStream_t stream, Clock::time_point deadline);
  // Blocks until every watched op has completed or one has failed; that failure, if any.
  std::optional<NcclFailure> drain();
  std::optional<NcclFailure> failure() const;
  bool aborted() const { return aborted_.load(); }
  // A failure seen by the calling thread (an enqueue error): recorded first-wins, then the
  // communicator is aborted.
  void fail_now(NcclFailure f);

 private:
  struct Pending {
    const char* op;
    cudaEvent_t done;
    Clock::time_point deadline;
  };
  void loop();
  // Under mu_: records `f` unless a failure is already recorded, aborts the communicator once,
  // drops the queue.
  void fail_locked(NcclFailure f);

  ncclComm_t comm_;
  int device_;
  std::string group_;
  int rank_;
  double timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // queue changed, failure recorded, or stopping
  std::deque<Pending> queue_;
  std::optional<NcclFailure> failure_;
  std::atomic<bool> aborted_{false};
  bool stop_ = false;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace tessera::comm::detail
#endif
