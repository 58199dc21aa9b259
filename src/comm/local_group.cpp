// The in-process engine: ranks are threads of one process sharing a Shared block. A collective is
// a two-phase rendezvous: every rank posts its buffer for generation g and waits for all posts,
// computes its own result from all posted buffers (in rank order, so every rank gets bitwise the
// same sum), then waits again before returning so that no buffer is reused while another rank is
// still reading it. send/recv go through per-(src, dst) mailboxes of copied bytes.
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "group_util.h"
#include "tessera/comm/communicator.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

using Clock = std::chrono::steady_clock;

struct Shared {
  explicit Shared(int n) : posted(n, nullptr), arrived(n, 0) {}
  std::mutex mu;
  std::condition_variable cv;
  std::vector<const void*> posted;  // this generation's buffers
  std::vector<int64_t> arrived;     // per rank: the last phase it reached
  std::map<std::pair<int, int>, std::deque<std::vector<uint8_t>>> mail;
  bool dead = false;
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Shared> s, int rank, int size, std::string name, double timeout)
      : s_(std::move(s)), rank_(rank), size_(size), name_(std::move(name)), timeout_(timeout) {}
  ~LocalCommunicator() override { stop_async(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string engine() const override { return "local"; }
  bool aborted() const override { return aborted_; }

  void all_reduce_sum(Tensor& t) override {
    check_f32(t, "all_reduce_sum");
    const size_t n = static_cast<size_t>(t.numel());
    std::vector<float> sum(n, 0.0f);
    collective("all_reduce_sum", t.data(), [&](const std::vector<const void*>& bufs) {
      for (const void* b : bufs) {
        const float* f = static_cast<const float*>(b);
        for (size_t i = 0; i < n; ++i) sum[i] += f[i];
      }
    });
    std::memcpy(t.data(), sum.data(), n * sizeof(float));
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    if (!in.is_contiguous() || !out.is_contiguous() ||
        out.nbytes() != in.nbytes() * static_cast<size_t>(size_))
      fail(ErrorCode::kInvalidArgument, name_, " all_gather: out ", out.str(), " is not ", size_,
           " x in ", in.str());
    const size_t bytes = in.nbytes();
    collective("all_gather", in.data(), [&](const std::vector<const void*>& bufs) {
      for (int r = 0; r < size_; ++r)
        std::memcpy(static_cast<char*>(out.data()) + r * bytes, bufs[static_cast<size_t>(r)],
                    bytes);
    });
  }

  void broadcast(Tensor& t, int root) override {
    check_peer(root, "broadcast");
    const size_t bytes = t.nbytes();
    std::vector<uint8_t> copy(bytes);
    collective("broadcast", t.data(), [&](const std::vector<const void*>& bufs) {
      std::memcpy(copy.data(), bufs[static_cast<size_t>(root)], bytes);
    });
    std::memcpy(t.data(), copy.data(), bytes);
  }

  void barrier() override {
    collective("barrier", nullptr, [](const std::vector<const void*>&) {});
  }

  // Each rank posts its input and layout; each then copies its own block out of every rank's
  // input, checking that the sender's count is the one it expected.
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                    const std::vector<int64_t>& recv_rows) override {
    struct Post {
      const uint8_t* data;
      const group_util::AllToAllLayout* layout;
    };
    const auto l =
        group_util::all_to_all_layout(name_, rank_, size_, in, send_rows, out, recv_rows);
    const Post mine{static_cast<const uint8_t*>(in.data()), &l};
    std::string mismatch;
    collective("all_to_all_v", &mine, [&](const std::vector<const void*>& bufs) {
      const auto me = static_cast<size_t>(rank_);
      for (int r = 0; r < size_; ++r) {
        const auto i = static_cast<size_t>(r);
        const auto* p = static_cast<const Post*>(bufs[i]);
        if (p->layout->send_bytes[me] != l.recv_bytes[i]) {
          mismatch = "rank " + std::to_string(r) + " sends " +
                     std::to_string(p->layout->send_bytes[me]) + " bytes, rank " +
                     std::to_string(rank_) + " expects " + std::to_string(l.recv_bytes[i]);
          continue;
        }
        if (l.recv_bytes[i] > 0)
          std::memcpy(static_cast<uint8_t*>(out.data()) + l.recv_off[i],
                      p->data + p->layout->send_off[me], l.recv_bytes[i]);
      }
    });
    if (!mismatch.empty())
      fail(ErrorCode::kInvalidArgument, "group ", name_, ": all_to_all_v on rank ", rank_,
           ": counts disagree: ", mismatch);
  }

  void send(const Tensor& t, int peer) override {
    drain_async();
    check_peer(peer, "send");
    const auto* p = static_cast<const uint8_t*>(t.data());
    std::lock_guard lk(s_->mu);
    s_->mail[{rank_, peer}].emplace_back(p, p + t.nbytes());
    s_->cv.notify_all();
  }

  void recv(Tensor& t, int peer) override {
    drain_async();
    check_peer(peer, "recv");
    std::unique_lock lk(s_->mu);
    auto& box = s_->mail[{peer, rank_}];
    if (!s_->cv.wait_until(lk, deadline(), [&] { return !box.empty() || s_->dead; }) || box.empty())
      timed_out(lk, "recv", {peer});
    std::vector<uint8_t> msg = std::move(box.front());
    box.pop_front();
    if (msg.size() != t.nbytes())
      fail(ErrorCode::kInvalidArgument, name_, " recv from rank ", peer, ": message of ",
           msg.size(), " bytes into a buffer of ", t.nbytes());
    std::memcpy(t.data(), msg.data(), msg.size());
  }

 private:
  Clock::time_point deadline() const {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
  }

  void check_f32(const Tensor& t, const char* op) const {
    if (t.dtype() != DType::kF32 || !t.is_contiguous() || !t.device().is_cpu())
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": needs a contiguous F32 CPU tensor, got ",
           t.str());
  }
  void check_peer(int peer, const char* op) const {
    if (peer < 0 || peer >= size_ || (peer == rank_ && std::string(op) != "broadcast"))
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": rank ", peer, " is not a peer of rank ",
           rank_, " in a group of ", size_);
  }

  [[noreturn]] void timed_out(std::unique_lock<std::mutex>& lk, const char* op,
                              std::vector<int> missing) {
    aborted_ = true;
    s_->dead = true;
    s_->cv.notify_all();
    lk.unlock();
    std::string who;
    for (int r : missing) who += (who.empty() ? "" : ", ") + std::to_string(r);
    fail(ErrorCode::kDeadlineExceeded, "group ", name_, ": ", op, " on rank ", rank_,
         " timed out after ", timeout_, " s waiting for rank ", who);
  }

  // Phase 2g+1: post and wait for all posts; run `fn` on everyone's buffers; phase 2g+2: wait for
  // everyone to finish reading.
  template <typename Fn>
  void collective(const char* op, const void* buf, Fn&& fn) {
    drain_async();  // async ops issued before this one run first (communicator.h)
    if (aborted_)
      fail(ErrorCode::kUnavailable, "group ", name_, " was aborted by an earlier failure");
    const int64_t phase = ++gen_ * 2 - 1;
    std::unique_lock lk(s_->mu);
    s_->posted[static_cast<size_t>(rank_)] = buf;
    arrive(lk, op, phase);
    std::vector<const void*> bufs = s_->posted;
    lk.unlock();
    fn(bufs);
    lk.lock();
    arrive(lk, op, phase + 1);
  }

  void arrive(std::unique_lock<std::mutex>& lk, const char* op, int64_t phase) {
    s_->arrived[static_cast<size_t>(rank_)] = phase;
    s_->cv.notify_all();
    auto all_here = [&] {
      for (int64_t a : s_->arrived)
        if (a < phase) return false;
      return true;
    };
    if (!s_->cv.wait_until(lk, deadline(), [&] { return all_here() || s_->dead; }) || !all_here()) {
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r)
        if (s_->arrived[static_cast<size_t>(r)] < phase) missing.push_back(r);
      timed_out(lk, op, missing);
    }
  }

  std::shared_ptr<Shared> s_;
  int rank_, size_;
  std::string name_;
  double timeout_;
  int64_t gen_ = 0;
  bool aborted_ = false;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_local_group(int size, const std::string& name,
                                                            double timeout_seconds) {
  if (size < 1) fail(ErrorCode::kInvalidArgument, "group ", name, ": size ", size, " < 1");
  auto shared = std::make_shared<Shared>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r)
    out.push_back(std::make_unique<LocalCommunicator>(shared, r, size, name, timeout_seconds));
  return out;
}

}  // namespace tessera::comm
