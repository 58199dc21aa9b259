// The NCCL engine (CUDA backend): ops are enqueued on the worker's stream and the call returns;
// the op is complete in the stream's order (every kernel enqueued after it sees its result), and
// no host thread spins for it. The communicator is created non-blocking (ncclConfig_t.blocking =
// 0) so that neither init nor an enqueue can hang the calling thread; each op's completion event
// goes to the watchdog (nccl_watchdog.h), whose thread aborts the communicator when an op misses
// the group's deadline or NCCL reports an error (ncclCommAbort also releases kernels stuck waiting
// for a missing peer). The failure surfaces at the next op, Work::wait or synchronize(), which the
// worker calls at the end of every step. NCCL cannot say which rank is missing, so the error names
// the group and the op only.
//
// The async collectives go on a side stream (made on first use) after an event recorded on the
// worker's stream, so kernels enqueued on the worker's stream after the call run alongside the
// collective; wait() orders the worker's stream after the op's completion event. Blocking ops
// first make the worker's stream wait for the last async op, so every rank's NCCL ops stay in one
// issue order.
#include "group_util.h"
#include "nccl_watchdog.h"
#include "tessera/comm/groups.h"
#include "tessera/core/error.h"

#if TESSERA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>
#endif

namespace tessera::comm {

#if TESSERA_HAVE_NCCL
namespace {

using Clock = std::chrono::steady_clock;

// Waits until the communicator leaves ncclInProgress; returns its state (ncclInProgress when the
// deadline passed first).
ncclResult_t settle(ncclComm_t comm, Clock::time_point deadline) {
  for (int spins = 0;; ++spins) {
    ncclResult_t st = ncclSuccess;
    if (ncclResult_t r = ncclCommGetAsyncError(comm, &st); r != ncclSuccess) return r;
    if (st != ncclInProgress) return st;
    if (Clock::now() >= deadline) return ncclInProgress;
    if (spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// An op that is complete as far as the host is concerned once enqueued (see send_async).
struct EnqueuedWork final : Work {
  void wait() override {}
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const GroupParams& p, ncclComm_t comm, void* barrier_buf)
      : rank_(p.rank),
        size_(p.size),
        name_(p.name),
        timeout_(p.timeout_seconds),
        device_(p.cuda_device),
        stream_(static_cast<cudaStream_t>(p.cuda_stream)),
        comm_(comm),
        barrier_buf_(barrier_buf),
        watchdog_(std::make_unique<detail::NcclWatchdog>(comm, p.cuda_device, p.name, p.rank,
                                                         p.timeout_seconds)) {}

  ~NcclCommunicator() override {
    stop_async();
    cudaSetDevice(device_);
    const bool aborted = watchdog_->aborted();
    watchdog_.reset();  // after every watched op completed or the group failed
    if (side_ != nullptr) {
      cudaStreamSynchronize(side_);
      cudaStreamDestroy(side_);
      cudaEventDestroy(last_async_);
    }
    if (!aborted) {
      // A clean finalize flushes NCCL's internal work; bounded like everything else.
      ncclCommFinalize(comm_);
      if (settle(comm_, group_util::deadline_after(timeout_)) == ncclSuccess)
        ncclCommDestroy(comm_);
      else
        ncclCommAbort(comm_);
    }
    cudaFree(barrier_buf_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string engine() const override { return "nccl"; }
  bool aborted() const override { return watchdog_->aborted(); }

  // Every op enqueued so far is complete on this rank, or the first failure is thrown.
  void synchronize() override {
    if (auto f = watchdog_->drain()) fail(f->code, f->message);
  }

  void all_reduce_sum(Tensor& t) override {
    const char* op = "all_reduce_sum";
    check(t, op);
    const ncclDataType_t dt = float_type(t, op);
    const auto n = static_cast<size_t>(t.numel());
    run(op, [&](cudaStream_t s) {
      return ncclAllReduce(t.data(), t.data(), n, dt, ncclSum, comm_, s);
    });
  }

  std::unique_ptr<Work> all_reduce_sum_async(Tensor& t) override {
    const char* op = "all_reduce_sum";
    check(t, op);
    const ncclDataType_t dt = float_type(t, op);
    const auto n = static_cast<size_t>(t.numel());
    return run_async(op, [&](cudaStream_t s) {
      return ncclAllReduce(t.data(), t.data(), n, dt, ncclSum, comm_, s);
    });
  }

  std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out) override {
    const char* op = "all_gather";
    check_gather(in, out);
    return run_async(op, [&](cudaStream_t s) {
      return ncclAllGather(in.data(), out.data(), in.nbytes(), ncclUint8, comm_, s);
    });
  }

  // NCCL's own reduce-scatter (its ring sums in its own order, not in rank order as gloo/shm do;
  // every rank still gets the same bits).
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    const char* op = "reduce_scatter_sum";
    const size_t n = check_scatter(in, out);
    run(op, [&](cudaStream_t s) {
      return ncclReduceScatter(in.data(), out.data(), n, ncclFloat32, ncclSum, comm_, s);
    });
  }
  std::unique_ptr<Work> reduce_scatter_sum_async(const Tensor& in, Tensor& out) override {
    const char* op = "reduce_scatter_sum";
    const size_t n = check_scatter(in, out);
    return run_async(op, [&](cudaStream_t s) {
      return ncclReduceScatter(in.data(), out.data(), n, ncclFloat32, ncclSum, comm_, s);
    });
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    const char* op = "all_gather";
    check_gather(in, out);
    run(op, [&](cudaStream_t s) {
      return ncclAllGather(in.data(), out.data(), in.nbytes(), ncclUint8, comm_, s);
    });
  }

  void broadcast(Tensor& t, int root) override {
    const char* op = "broadcast";
    check(t, op);
    if (root < 0 || root >= size_)
      fail(ErrorCode::kInvalidArgument, name_, " broadcast: rank ", root, " is not in a group of ",
           size_);
    run(op, [&](cudaStream_t s) {
      return ncclBroadcast(t.data(), t.data(), t.nbytes(), ncclUint8, root, comm_, s);
    });
  }

  void send(const Tensor& t, int peer) override {
    const char* op = "send";
    check(t, op);
    check_peer(peer, op);
    run(op,
        [&](cudaStream_t s) { return ncclSend(t.data(), t.nbytes(), ncclUint8, peer, comm_, s); });
  }

  void recv(Tensor& t, int peer) override {
    const char* op = "recv";
    check(t, op);
    check_peer(peer, op);
    run(op,
        [&](cudaStream_t s) { return ncclRecv(t.data(), t.nbytes(), ncclUint8, peer, comm_, s); });
  }

  // NCCL's send and recv already return to the host at once (enqueued on the worker's stream,
  // complete in its order), and on that one stream a pipeline stage's sends and receives keep
  // their issue order on both ranks; the progress thread would call NCCL from a second thread. So
  // the async forms are the calls themselves, and wait() has nothing left to do.
  std::unique_ptr<Work> send_async(const Tensor& t, int peer) override {
    send(t, peer);
    return std::make_unique<EnqueuedWork>();
  }
  std::unique_ptr<Work> recv_async(Tensor& t, int peer) override {
    recv(t, peer);
    return std::make_unique<EnqueuedWork>();
  }

  // One NCCL group of a send and a recv per non-empty block (the self block is a device copy):
  // NCCL matches them pairwise inside the group, so the order cannot deadlock.
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                    const std::vector<int64_t>& recv_rows) override {
    const char* op = "all_to_all_v";
    check(in, op);
    check(out, op);
    const auto l =
        group_util::all_to_all_layout(name_, rank_, size_, in, send_rows, out, recv_rows);
    const auto* src = static_cast<const uint8_t*>(in.data());
    auto* dst = static_cast<uint8_t*>(out.data());
    run(op, [&](cudaStream_t s) -> ncclResult_t {
      ncclResult_t r = ncclGroupStart();
      if (r != ncclSuccess) return r;
      for (int p = 0; p < size_ && r == ncclSuccess; ++p) {
        const auto i = static_cast<size_t>(p);
        if (p == rank_) continue;
        if (l.send_bytes[i] > 0)
          r = ncclSend(src + l.send_off[i], l.send_bytes[i], ncclUint8, p, comm_, s);
        if (r == ncclSuccess && l.recv_bytes[i] > 0)
          r = ncclRecv(dst + l.recv_off[i], l.recv_bytes[i], ncclUint8, p, comm_, s);
      }
      const ncclResult_t end = ncclGroupEnd();
      if (r != ncclSuccess) return r;
      const auto me = static_cast<size_t>(rank_);
      if (end == ncclSuccess && l.send_bytes[me] > 0 &&
          cudaMemcpyAsync(dst + l.recv_off[me], src + l.send_off[me], l.send_bytes[me],
                          cudaMemcpyDeviceToDevice, s) != cudaSuccess)
        return ncclUnhandledCudaError;
      return end;
    });
  }

  // Host-level: returns once every rank has reached it (or throws), unlike the stream-ordered
  // ops.
  void barrier() override {
    run("barrier", [&](cudaStream_t s) {
      return ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, s);
    });
    synchronize();
  }

 private:
  ncclDataType_t float_type(const Tensor& t, const char* op) const {
    switch (t.dtype()) {
      case DType::kF32:
        return ncclFloat32;
      case DType::kF16:
        return ncclFloat16;
      case DType::kBF16:
        return ncclBfloat16;
      default:
        fail(ErrorCode::kInvalidArgument, name_, " ", op, ": needs F32, F16 or BF16, got ",
             t.str());
    }
  }
  void check_gather(const Tensor& in, Tensor& out) const {
    check(in, "all_gather");
    check(out, "all_gather");
    if (out.dtype() != in.dtype() || out.nbytes() != in.nbytes() * static_cast<size_t>(size_))
      fail(ErrorCode::kInvalidArgument, name_, " all_gather: out ", out.str(), " is not ", size_,
           " x in ", in.str());
  }
  size_t check_scatter(const Tensor& in, Tensor& out) const {
    check(in, "reduce_scatter_sum");
    check(out, "reduce_scatter_sum");
    return group_util::reduce_scatter_block(name_, size_, in, out);
  }

  void check(const Tensor& t, const char* op) const {
    throw_if_failed(op);
    if (!t.defined() || !t.is_contiguous() || t.device() != Device::cuda(device_))
      fail(ErrorCode::kInvalidArgument, name_, " ", op,
           ": needs a contiguous tensor on cuda:", device_, ", got ",
           t.defined() ? t.str() : std::string("an undefined tensor"));
  }
  void check_peer(int peer, const char* op) const {
    if (peer < 0 || peer >= size_ || peer == rank_)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": rank ", peer, " is not a peer of rank ",
           rank_, " in a group of ", size_);
  }

  [[noreturn]] void failed(const char* op, ErrorCode code, const std::string& why) {
    std::ostringstream m;
    m << "group " << name_ << ": " << op << " on rank " << rank_ << " " << why;
    watchdog_->fail_now({code, m.str()});
    fail(code, m.str());
  }

  // An earlier op's failure (the watchdog's or an enqueue's), reported by this op.
  void throw_if_failed(const char* op) const {
    if (auto f = watchdog_->failure())
      fail(f->code == ErrorCode::kDeadlineExceeded ? f->code : ErrorCode::kUnavailable, "group ",
           name_, ": ", op, " on rank ", rank_,
           ": the communicator was aborted by an earlier failure: ", f->message);
  }

  template <typename Enqueue>
  void run(const char* op, Enqueue&& enqueue) {
    throw_if_failed(op);
    cudaSetDevice(device_);
    const auto deadline = group_util::deadline_after(timeout_);
    if (side_ != nullptr && cudaStreamWaitEvent(stream_, last_async_, 0) != cudaSuccess)
      failed(op, ErrorCode::kInternal, "failed: CUDA: cannot order after the async ops");
    const ncclResult_t r = enqueue(stream_);
    if (r != ncclSuccess && r != ncclInProgress)
      failed(op, ErrorCode::kUnavailable,
             std::string("failed: NCCL: ") + ncclGetErrorString(r) + " (" +
                 ncclGetLastError(comm_) + ")");
    watchdog_->watch(op, stream_, deadline);
  }

  // An async op: its completion event on the side stream (the watchdog watches another); wait()
  // reports an earlier failure or orders the worker's stream after the op.
  class NcclWork final : public Work {
   public:
    NcclWork(NcclCommunicator* c, const char* op, cudaEvent_t done) : c_(c), op_(op), done_(done) {}
    ~NcclWork() override {
      group_util::wait_dropping_error(*this);
      cudaEventDestroy(done_);
    }
    void wait() override {
      if (waited_) return;
      waited_ = true;
      cudaSetDevice(c_->device_);
      c_->throw_if_failed(op_);
      if (cudaStreamWaitEvent(c_->stream_, done_, 0) != cudaSuccess)
        c_->failed(op_, ErrorCode::kInternal, "failed: CUDA: cannot order after the op");
    }

   private:
    NcclCommunicator* c_;
    const char* op_;
    cudaEvent_t done_;
    bool waited_ = false;
  };

  template <typename Enqueue>
  std::unique_ptr<Work> run_async(const char* op, Enqueue&& enqueue) {
    throw_if_failed(op);
    cudaSetDevice(device_);
    const auto deadline = group_util::deadline_after(timeout_);
    if (side_ == nullptr) {
      if (cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking) != cudaSuccess) {
        side_ = nullptr;
        failed(op, ErrorCode::kUnavailable, "failed: CUDA: cannot create the side stream");
      }
      if (cudaEventCreateWithFlags(&last_async_, cudaEventDisableTiming) != cudaSuccess)
        failed(op, ErrorCode::kUnavailable, "failed: CUDA: cannot create an event");
    }
    cudaEvent_t ready = nullptr, done = nullptr;
    if (cudaEventCreateWithFlags(&ready, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&done, cudaEventDisableTiming) != cudaSuccess)
      failed(op, ErrorCode::kUnavailable, "failed: CUDA: cannot create an event");
    // The side stream starts the op once the worker's stream has produced its input.
    cudaEventRecord(ready, stream_);
    cudaStreamWaitEvent(side_, ready, 0);
    cudaEventDestroy(ready);  // released once the recorded work completes
    const ncclResult_t r = enqueue(side_);
    if (r != ncclSuccess && r != ncclInProgress) {
      cudaEventDestroy(done);
      failed(op, ErrorCode::kUnavailable,
             std::string("failed: NCCL: ") + ncclGetErrorString(r) + " (" +
                 ncclGetLastError(comm_) + ")");
    }
    cudaEventRecord(done, side_);
    cudaEventRecord(last_async_, side_);
    watchdog_->watch(op, side_, deadline);
    return std::make_unique<NcclWork>(this, op, done);
  }

  int rank_, size_;
  std::string name_;
  double timeout_;
  int device_;
  cudaStream_t stream_;
  ncclComm_t comm_;
  void* barrier_buf_;                 // one float on the device for barrier()
  cudaStream_t side_ = nullptr;       // async collectives; made on first use
  cudaEvent_t last_async_ = nullptr;  // recorded after every async op on side_
  std::unique_ptr<detail::NcclWatchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const GroupParams& p) {
  group_util::check_params(p, "nccl");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    fail(ErrorCode::kUnsupported, "group ", p.name,
         ": NCCL needs a CUDA device and none is present");
  }
  if (p.cuda_device < 0 || p.cuda_device >= devices)
    fail(ErrorCode::kInvalidArgument, "group ", p.name, ": cuda device ", p.cuda_device,
         " is not one of the ", devices, " present");
  if (cudaError_t e = cudaSetDevice(p.cuda_device); e != cudaSuccess)
    fail(ErrorCode::kUnavailable, "group ", p.name, ": cudaSetDevice(", p.cuda_device,
         "): ", cudaGetErrorString(e));
  const auto deadline = group_util::deadline_after(p.timeout_seconds);
  group_util::join(p, deadline);

  ncclUniqueId id;
  const std::string key = p.name + "/nccl_id";
  if (p.rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
      fail(ErrorCode::kUnavailable, "group ", p.name, ": ncclGetUniqueId: ", ncclGetErrorString(r));
    const auto* b = reinterpret_cast<const uint8_t*>(&id);
    p.store->set(key, std::vector<uint8_t>(b, b + sizeof(id)));
  } else {
    const auto v = p.store->get(key, group_util::seconds_left(deadline));
    if (v.size() != sizeof(id))
      fail(ErrorCode::kInvalidArgument, "group ", p.name, ": '", key, "' holds ", v.size(),
           " bytes, not an NCCL unique id");
    std::memcpy(&id, v.data(), sizeof(id));
  }

  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, p.size, id, p.rank, &cfg);
  if (r != ncclSuccess && r != ncclInProgress)
    fail(ErrorCode::kUnavailable, "group ", p.name, ": ncclCommInitRank on rank ", p.rank, ": ",
         ncclGetErrorString(r), " (", ncclGetLastError(comm), ")");
  r = settle(comm, deadline);
  if (r != ncclSuccess) {
    std::string why = r == ncclInProgress ? std::string("a rank of the group did not join")
                                          : std::string(ncclGetErrorString(r));
    ncclCommAbort(comm);
    fail(r == ncclInProgress ? ErrorCode::kDeadlineExceeded : ErrorCode::kUnavailable, "group ",
         p.name, ": connect on rank ", p.rank, " failed after at most ", p.timeout_seconds,
         " s: ", why);
  }
  void* barrier_buf = nullptr;
  if (cudaError_t e = cudaMalloc(&barrier_buf, sizeof(float)); e != cudaSuccess) {
    ncclCommAbort(comm);
    fail(ErrorCode::kResourceExhausted, "group ", p.name, ": cudaMalloc: ", cudaGetErrorString(e));
  }
  cudaMemset(barrier_buf, 0, sizeof(float));
  return std::make_unique<NcclCommunicator>(p, comm, barrier_buf);
}

bool have_nccl() { return true; }

#else

std::unique_ptr<Communicator> make_nccl_communicator(const GroupParams& p) {
  fail(ErrorCode::kUnsupported, "group ", p.name, ": this build has no NCCL");
}
bool have_nccl() { return false; }

#endif

}  // namespace tessera::comm
