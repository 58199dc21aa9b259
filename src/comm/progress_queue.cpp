// The progress thread (progress_queue.h) and the Communicator base class's async defaults:
// every *_async call that an engine does not implement itself runs the engine's blocking call on
// the progress thread, and the default reduce_scatter_sum is an all-reduce of a copy.
#include "progress_queue.h"

#include <pthread.h>

#include "tessera/core/error.h"

namespace tessera::comm {
namespace detail {
namespace {

class QueuedWork final : public Work {
 public:
  explicit QueuedWork(std::shared_ptr<WorkState> s) : s_(std::move(s)) {}
  ~QueuedWork() override {
    std::unique_lock lk(s_->mu);
    s_->cv.wait(lk, [&] { return s_->done; });
  }
  void wait() override {
    std::unique_lock lk(s_->mu);
    s_->cv.wait(lk, [&] { return s_->done; });
    if (s_->reported) return;
    s_->reported = true;
    if (s_->error) std::rethrow_exception(s_->error);
  }

 private:
  std::shared_ptr<WorkState> s_;
};

void finish(WorkState& s, std::exception_ptr error) {
  std::lock_guard lk(s.mu);
  s.error = std::move(error);
  s.done = true;
  s.cv.notify_all();
}

}  // namespace

ProgressQueue::ProgressQueue(std::string group) : group_(std::move(group)) {}

ProgressQueue::~ProgressQueue() { stop(); }

std::unique_ptr<Work> ProgressQueue::submit(std::function<void()> fn) {
  auto state = std::make_shared<WorkState>();
  {
    std::unique_lock lk(mu_);
    if (!stopping_) {
      if (!thread_.joinable()) {
        thread_ = std::thread([this] { run(); });
        thread_id_ = thread_.get_id();
      }
      items_.push_back({std::move(fn), state});
      ++submitted_;
      cv_.notify_one();
      return std::make_unique<QueuedWork>(std::move(state));
    }
  }
  // Stopped (the engine is being destroyed): run inline so the caller still gets its answer.
  std::exception_ptr err;
  try {
    fn();
  } catch (...) {
    err = std::current_exception();
  }
  finish(*state, err);
  return std::make_unique<QueuedWork>(std::move(state));
}

void ProgressQueue::drain() {
  std::unique_lock lk(mu_);
  if (!thread_.joinable() || std::this_thread::get_id() == thread_id_) return;
  const uint64_t target = submitted_;
  idle_cv_.wait(lk, [&] { return completed_ >= target; });
}

void ProgressQueue::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ProgressQueue::run() {
  // Named for top/gdb: "comm <group>" cut to the 15 characters Linux keeps.
  const std::string name = ("comm " + group_).substr(0, 15);
  ::pthread_setname_np(::pthread_self(), name.c_str());
  for (;;) {
    Item item;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !items_.empty(); });
      if (items_.empty()) return;  // stopping, and everything queued has run
      item = std::move(items_.front());
      items_.pop_front();
    }
    std::exception_ptr err;
    try {
      item.fn();
    } catch (...) {
      err = std::current_exception();
    }
    finish(*item.state, err);
    std::lock_guard lk(mu_);
    ++completed_;
    idle_cv_.notify_all();
  }
}

}  // namespace detail

Communicator::Communicator() = default;
Communicator::~Communicator() = default;  // engines have called stop_async() already

void Communicator::drain_async() {
  if (progress_) progress_->drain();
}

void Communicator::stop_async() {
  if (progress_) progress_->stop();
}

std::unique_ptr<Work> Communicator::submit(const char* op, std::function<void()> fn) {
  if (aborted())
    fail(ErrorCode::kUnavailable, "group ", name(), ": ", op, " on rank ", rank(),
         ": the communicator was aborted by an earlier failure");
  if (!progress_) progress_ = std::make_unique<detail::ProgressQueue>(name());
  return progress_->submit(std::move(fn));
}

void Communicator::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  drain_async();
  const int64_t n = size();
  if (!in.defined() || !out.defined() || !in.is_contiguous() || !out.is_contiguous() ||
      in.dtype() != out.dtype() || in.ndim() < 1 || in.dim(0) != n * out.dim(0) ||
      in.nbytes() != out.nbytes() * static_cast<size_t>(n))
    fail(ErrorCode::kInvalidArgument, name(), " reduce_scatter_sum: in ",
         in.defined() ? in.str() : std::string("undefined"), " is not ", n, " blocks of out ",
         out.defined() ? out.str() : std::string("undefined"));
  Tensor sum = Tensor::empty(in.shape(), in.dtype(), in.device());
  copy(sum, in);
  all_reduce_sum(sum);
  const int64_t b = out.dim(0);
  copy(out, sum.slice(rank() * b, (rank() + 1) * b));
}

std::unique_ptr<Work> Communicator::all_reduce_sum_async(Tensor& t) {
  return submit("all_reduce_sum", [this, t]() mutable { all_reduce_sum(t); });
}
std::unique_ptr<Work> Communicator::all_gather_async(const Tensor& in, Tensor& out) {
  return submit("all_gather", [this, in, out]() mutable { all_gather(in, out); });
}
std::unique_ptr<Work> Communicator::reduce_scatter_sum_async(const Tensor& in, Tensor& out) {
  return submit("reduce_scatter_sum", [this, in, out]() mutable { reduce_scatter_sum(in, out); });
}
std::unique_ptr<Work> Communicator::send_async(const Tensor& t, int peer) {
  return submit("send", [this, t, peer] { send(t, peer); });
}
std::unique_ptr<Work> Communicator::recv_async(Tensor& t, int peer) {
  return submit("recv", [this, t, peer]() mutable { recv(t, peer); });
}

}  // namespace tessera::comm
