// NcclWatchdog (nccl_watchdog.h). One thread per communicator polls only the oldest op: NCCL ops
// of one communicator complete in issue order on its streams (every blocking op is ordered after
// the async ones), so when the oldest is late the group is stuck.
#include "nccl_watchdog.h"

#if TESSERA_HAVE_NCCL
#include <sstream>

namespace tessera::comm::detail {

NcclWatchdog::NcclWatchdog(ncclComm_t comm, int device, std::string group, int rank,
                           double timeout_seconds)
    : comm_(comm),
      device_(device),
      group_(std::move(group)),
      rank_(rank),
      timeout_(timeout_seconds),
      thread_([this] { loop(); }) {}

NcclWatchdog::~NcclWatchdog() {
  {
    std::unique_lock lock(mu_);
    // Every queued op completes or times out (and then the queue is dropped): bounded.
    cv_.wait(lock, [&] { return queue_.empty(); });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void NcclWatchdog::watch(const char* op, cudaStream_t stream, Clock::time_point deadline) {
  cudaEvent_t done = nullptr;
  if (cudaEventCreateWithFlags(&done, cudaEventDisableTiming) != cudaSuccess ||
      cudaEventRecord(done, stream) != cudaSuccess) {
    if (done) cudaEventDestroy(done);
    std::ostringstream m;
    m << "group " << group_ << ": " << op << " on rank " << rank_
      << " failed: CUDA: cannot record its completion event";
    fail_now({ErrorCode::kUnavailable, m.str()});
    fail(ErrorCode::kUnavailable, m.str());
  }
  {
    std::lock_guard lock(mu_);
    if (!failure_) {
      queue_.push_back({op, done, deadline});
      done = nullptr;
    }
  }
  if (done) cudaEventDestroy(done);  // the group already failed: nothing to watch
  cv_.notify_all();
}

std::optional<NcclFailure> NcclWatchdog::drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return queue_.empty() || failure_.has_value(); });
  return failure_;
}

std::optional<NcclFailure> NcclWatchdog::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

void NcclWatchdog::fail_now(NcclFailure f) {
  {
    std::lock_guard lock(mu_);
    fail_locked(std::move(f));
  }
  cv_.notify_all();
}

void NcclWatchdog::fail_locked(NcclFailure f) {
  if (!failure_) failure_ = std::move(f);
  if (!aborted_.exchange(true)) ncclCommAbort(comm_);  // releases kernels waiting on a peer
  for (const Pending& p : queue_) cudaEventDestroy(p.done);
  queue_.clear();
}

void NcclWatchdog::loop() {
  cudaSetDevice(device_);
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_ && queue_.empty()) return;
    const Pending p = queue_.front();
    lock.unlock();
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(comm_, &st);
    const cudaError_t q = st == ncclSuccess ? cudaEventQuery(p.done) : cudaErrorNotReady;
    const bool late = Clock::now() >= p.deadline;
    lock.lock();
    if (queue_.empty() || queue_.front().done != p.done) continue;  // dropped by a failure
    std::ostringstream why;
    why << "group " << group_ << ": " << p.op << " on rank " << rank_;
    if (st != ncclSuccess && st != ncclInProgress) {
      why << " failed: NCCL: " << ncclGetErrorString(st) << " (" << ncclGetLastError(comm_) << ")";
      fail_locked({ErrorCode::kUnavailable, why.str()});
    } else if (q == cudaSuccess) {
      cudaEventDestroy(p.done);
      queue_.pop_front();
    } else if (q != cudaErrorNotReady) {
      why << " failed: CUDA: " << cudaGetErrorString(q);
      fail_locked({ErrorCode::kInternal, why.str()});
    } else if (late) {
      why << " timed out after " << timeout_
          << " s: a rank of the group did not join (NCCL cannot tell which)";
      fail_locked({ErrorCode::kDeadlineExceeded, why.str()});
    } else {
      // Not done yet: look again shortly (this thread's spinning costs no caller anything).
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      lock.lock();
      continue;
    }
    cv_.notify_all();
  }
}

}  // namespace tessera::comm::detail
#endif
