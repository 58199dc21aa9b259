// The Gloo engine (CPU backend). Collectives are built on Gloo's unbound buffers rather than its
// opaque algorithms so that a timeout can name the ranks whose messages never came: every rank
// posts one recv per peer and one send per peer, then waits for each peer in turn. The messages
// are small (TP activations: hidden x batch floats), so a direct exchange costs one round trip.
// all_reduce_sum adds the ranks' buffers in rank order on every rank: bitwise the same result
// everywhere, and the same as the local engine.
//
// Slots: all ranks call collectives in the same order, so a per-communicator counter names them;
// point-to-point messages use a counter per (src, dst) pair in a separate slot range, because
// only the two ranks involved call them.
//
// Gloo reports a timeout as gloo::IoException("Timed out ...") and, at that moment, closes every
// pair of the context; a peer that died shows up as an IoException on the buffer waiting for it.
// Either way this communicator is aborted and closes its connections so that the peers fail fast
// too instead of waiting out their own timeouts.
#include "group_util.h"
#include "tessera/comm/groups.h"
#include "tessera/core/error.h"

#if TESSERA_HAVE_GLOO
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <signal.h>

#include <chrono>
#include <cstring>
#include <string_view>
#endif

namespace tessera::comm {

#if TESSERA_HAVE_GLOO
namespace {

using Clock = std::chrono::steady_clock;
using gloo::transport::UnboundBuffer;

// Gloo's rendezvous keys live under "<group>/gloo/" in our store; every wait is bounded by the
// connect deadline.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(StoreClient& c, std::string prefix, Clock::time_point deadline)
      : c_(c), prefix_(std::move(prefix)), deadline_(deadline) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    c_.set(prefix_ + key, std::vector<uint8_t>(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    auto v = c_.get(prefix_ + key, group_util::seconds_left(deadline_));
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, kDefaultTimeout); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    const auto until = std::min(deadline_, Clock::now() + timeout);
    for (const auto& k : keys) c_.get(prefix_ + k, group_util::seconds_left(until));
  }

 private:
  StoreClient& c_;
  std::string prefix_;
  Clock::time_point deadline_;
};

bool is_timeout(const gloo::IoException& e) {
  return std::string_view(e.what()).find("Timed out") != std::string_view::npos;
}

// One posted send or recv: the peer it is for and Gloo's handle.
struct Posted {
  int peer;
  std::unique_ptr<UnboundBuffer> buf;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const GroupParams& p, std::shared_ptr<gloo::transport::Device> dev,
                   std::shared_ptr<gloo::rendezvous::Context> ctx)
      : rank_(p.rank),
        size_(p.size),
        name_(p.name),
        timeout_(p.timeout_seconds),
        dev_(std::move(dev)),
        ctx_(std::move(ctx)),
        send_seq_(static_cast<size_t>(p.size), 0),
        recv_seq_(static_cast<size_t>(p.size), 0) {}

  ~GlooCommunicator() override {
    stop_async();
    ctx_.reset();  // pairs first, then the device's event loop
    dev_.reset();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string engine() const override { return "gloo"; }
  bool aborted() const override { return aborted_; }

  void all_reduce_sum(Tensor& t) override {
    const char* op = "all_reduce_sum";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    if (t.dtype() != DType::kF32)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": needs F32, got ", t.str());
    const size_t n = static_cast<size_t>(t.numel());
    const size_t bytes = n * sizeof(float);
    if (size_ == 1 || n == 0) return;
    scratch_.resize(static_cast<size_t>(size_));
    std::vector<void*> dst(static_cast<size_t>(size_), nullptr);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      scratch_[static_cast<size_t>(r)].resize(n);
      dst[static_cast<size_t>(r)] = scratch_[static_cast<size_t>(r)].data();
    }
    exchange(op, t.data(), bytes, dst);
    sum_.assign(n, 0.0f);
    for (int r = 0; r < size_; ++r) {
      const float* f = r == rank_ ? t.data_as<float>() : scratch_[static_cast<size_t>(r)].data();
      for (size_t i = 0; i < n; ++i) sum_[i] += f[i];
    }
    std::memcpy(t.data(), sum_.data(), bytes);
  }

  // Gloo's own async API: the sends and recvs are posted here, under the op's slot, and move in
  // Gloo's event loop while the caller computes; wait() waits for them and sums in rank order,
  // exactly as all_reduce_sum. No progress-thread hop per op (on a loaded machine each thread
  // wake-up can cost a scheduler slice). Slots are taken in issue order, so blocking and async
  // ops still match across ranks whatever order their waits come in.
  std::unique_ptr<Work> all_reduce_sum_async(Tensor& t) override {
    const char* op = "all_reduce_sum";
    check_usable(op);
    check_cpu(t, op);
    if (t.dtype() != DType::kF32)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": needs F32, got ", t.str());
    auto w = std::make_unique<AllReduceWork>(this, t);
    const size_t n = static_cast<size_t>(t.numel());
    if (size_ == 1 || n == 0) return w;
    w->scratch.resize(static_cast<size_t>(size_));
    const uint64_t slot = next_collective_slot();
    w->deadline = op_deadline();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      w->scratch[static_cast<size_t>(r)].resize(n);
      post(op, w->recvs, r, w->scratch[static_cast<size_t>(r)].data(), n * sizeof(float), slot,
           false);
    }
    for (int r = 0; r < size_; ++r)
      if (r != rank_) post(op, w->sends, r, t.data(), n * sizeof(float), slot, true);
    w->posted = true;
    return w;
  }

  // Each rank sends block r of `in` to rank r only, and sums the blocks it receives in rank order
  // from 0.0f, as all_reduce_sum does: 1/size of all_reduce_sum's bytes, bitwise its result.
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    const char* op = "reduce_scatter_sum";
    check_usable(op);
    check_cpu(in, op);
    check_cpu(out, op);
    const HostAccess open{&in, &out};
    const size_t n = group_util::reduce_scatter_block(name_, size_, in, out);
    const float* src = in.data_as<float>();
    float* dst = out.data_as<float>();
    if (n == 0) return;
    const float* mine = src + static_cast<size_t>(rank_) * n;
    if (size_ == 1) {  // as all_reduce_sum: a group of one leaves the values as they are
      std::memmove(dst, mine, n * sizeof(float));
      return;
    }
    scratch_.resize(static_cast<size_t>(size_));
    const uint64_t slot = next_collective_slot();
    const auto deadline = op_deadline();
    std::vector<Posted> recvs, sends;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      scratch_[static_cast<size_t>(r)].resize(n);
      post(op, recvs, r, scratch_[static_cast<size_t>(r)].data(), n * sizeof(float), slot, false);
    }
    for (int r = 0; r < size_; ++r)
      if (r != rank_)
        post(op, sends, r, const_cast<float*>(src) + static_cast<size_t>(r) * n, n * sizeof(float),
             slot, true);
    wait_all(op, recvs, false, deadline);
    wait_all(op, sends, true, deadline);
    sum_.assign(n, 0.0f);
    for (int r = 0; r < size_; ++r) {
      const float* f = r == rank_ ? mine : scratch_[static_cast<size_t>(r)].data();
      for (size_t i = 0; i < n; ++i) sum_[i] += f[i];
    }
    std::memcpy(dst, sum_.data(), n * sizeof(float));
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    const char* op = "all_gather";
    check_usable(op);
    check_cpu(in, op);
    check_cpu(out, op);
    const HostAccess open{&in, &out};
    if (out.dtype() != in.dtype() || out.nbytes() != in.nbytes() * static_cast<size_t>(size_))
      fail(ErrorCode::kInvalidArgument, name_, " all_gather: out ", out.str(), " is not ", size_,
           " x in ", in.str());
    const size_t bytes = in.nbytes();
    if (bytes == 0) return;
    auto* base = static_cast<uint8_t*>(out.data());
    std::memmove(base + static_cast<size_t>(rank_) * bytes, in.data(), bytes);
    if (size_ == 1) return;
    std::vector<void*> dst(static_cast<size_t>(size_), nullptr);
    for (int r = 0; r < size_; ++r)
      if (r != rank_) dst[static_cast<size_t>(r)] = base + static_cast<size_t>(r) * bytes;
    exchange(op, base + static_cast<size_t>(rank_) * bytes, bytes, dst);
  }

  void broadcast(Tensor& t, int root) override {
    const char* op = "broadcast";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    check_rank(root, op);
    if (size_ == 1 || t.nbytes() == 0) return;
    const uint64_t slot = next_collective_slot();
    const auto deadline = op_deadline();
    std::vector<Posted> posted;
    if (rank_ == root) {
      for (int r = 0; r < size_; ++r)
        if (r != rank_) post(op, posted, r, t.data(), t.nbytes(), slot, /*send=*/true);
    } else {
      post(op, posted, root, t.data(), t.nbytes(), slot, /*send=*/false);
    }
    wait_all(op, posted, rank_ == root, deadline);
  }

  void send(const Tensor& t, int peer) override {
    const char* op = "send";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    check_peer(peer, op);
    const uint64_t slot = p2p_slot(rank_, peer, send_seq_[static_cast<size_t>(peer)]++);
    const auto deadline = op_deadline();
    std::vector<Posted> posted;
    post(op, posted, peer, t.data(), t.nbytes(), slot, /*send=*/true);
    wait_all(op, posted, /*send=*/true, deadline);
  }

  void recv(Tensor& t, int peer) override {
    const char* op = "recv";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    check_peer(peer, op);
    const uint64_t slot = p2p_slot(peer, rank_, recv_seq_[static_cast<size_t>(peer)]++);
    const auto deadline = op_deadline();
    std::vector<Posted> posted;
    post(op, posted, peer, t.data(), t.nbytes(), slot, /*send=*/false);
    wait_all(op, posted, /*send=*/false, deadline);
  }

  // Full duplex: the message is posted to Gloo's event loop here, under its pair's next slot, and
  // moves while the caller computes or waits on other ops; a send and a recv (or several) may be
  // in flight at once, in either order, since neither waits for the other. (On the progress
  // thread a send would wait there for the peer's recv, and a recv issued after it would wait
  // behind it: two ranks sending to each other first would deadlock.)
  std::unique_ptr<Work> send_async(const Tensor& t, int peer) override {
    return post_p2p("send", t, peer, true);
  }
  std::unique_ptr<Work> recv_async(Tensor& t, int peer) override {
    return post_p2p("recv", t, peer, false);
  }

  // Every rank posts a recv for each peer that sends it rows and a send for each peer it sends
  // rows to, all under one collective slot, then waits for the recvs and then the sends: no
  // ordering between pairs, so no deadlock. Empty blocks post nothing (both sides know the count).
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                    const std::vector<int64_t>& recv_rows) override {
    const char* op = "all_to_all_v";
    check_usable(op);
    check_cpu(in, op);
    check_cpu(out, op);
    const HostAccess open{&in, &out};
    const auto l =
        group_util::all_to_all_layout(name_, rank_, size_, in, send_rows, out, recv_rows);
    auto* src = static_cast<uint8_t*>(in.data());
    auto* dst = static_cast<uint8_t*>(out.data());
    group_util::copy_own_block(l, rank_, in, out);
    if (size_ == 1) return;
    const uint64_t slot = next_collective_slot();
    const auto deadline = op_deadline();
    std::vector<Posted> recvs, sends;
    for (int r = 0; r < size_; ++r) {
      const auto i = static_cast<size_t>(r);
      if (r != rank_ && l.recv_bytes[i] > 0)
        post(op, recvs, r, dst + l.recv_off[i], l.recv_bytes[i], slot, false);
    }
    for (int r = 0; r < size_; ++r) {
      const auto i = static_cast<size_t>(r);
      if (r != rank_ && l.send_bytes[i] > 0)
        post(op, sends, r, src + l.send_off[i], l.send_bytes[i], slot, true);
    }
    wait_all(op, recvs, false, deadline);
    wait_all(op, sends, true, deadline);
  }

  void barrier() override {
    const char* op = "barrier";
    check_usable(op);
    if (size_ == 1) return;
    uint8_t mine = 1;
    std::vector<uint8_t> theirs(static_cast<size_t>(size_), 0);
    std::vector<void*> dst(static_cast<size_t>(size_), nullptr);
    for (int r = 0; r < size_; ++r)
      if (r != rank_) dst[static_cast<size_t>(r)] = &theirs[static_cast<size_t>(r)];
    exchange(op, &mine, 1, dst);
  }

 private:
  Clock::time_point op_deadline() const {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
  }
  uint64_t next_collective_slot() { return ++collective_seq_; }
  // Bit 63 set: point-to-point, 16 bits each of src and dst, 30 bits of sequence. A pair has at
  // most a few messages in flight (a blocking send waits for the matching recv; the worker waits
  // for its previous send_async before the next), so wrapping is safe.
  static uint64_t p2p_slot(int src, int dst, uint64_t seq) {
    return (1ull << 63) | (static_cast<uint64_t>(src & 0xffff) << 46) |
           (static_cast<uint64_t>(dst & 0xffff) << 30) | (seq & ((1ull << 30) - 1));
  }

  // Every blocking op starts here: async ops issued before it run first (communicator.h).
  void check_usable(const char* op) {
    drain_async();
    if (aborted_)
      fail(ErrorCode::kUnavailable, "group ", name_, ": ", op, " on rank ", rank_,
           ": the communicator was aborted by an earlier failure");
  }
  // Gloo moves host memory: CPU tensors, or guarded-device ones (opened for the op, as NCCL
  // reads GPU memory directly). CUDA tensors go through NCCL instead.
  void check_cpu(const Tensor& t, const char* op) const {
    if (!t.defined() || !t.is_contiguous() || !t.storage()->host_addressable())
      fail(ErrorCode::kInvalidArgument, name_, " ", op,
           ": needs a contiguous CPU or guarded-device tensor, got ",
           t.defined() ? t.str() : std::string("an undefined tensor"));
  }
  void check_rank(int r, const char* op) const {
    if (r < 0 || r >= size_)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": rank ", r, " is not in a group of ",
           size_);
  }
  void check_peer(int peer, const char* op) const {
    check_rank(peer, op);
    if (peer == rank_)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": rank ", rank_, " cannot ", op,
           " to itself");
  }

  // Every rank sends `src` to every peer and receives peer r's message into dst[r].
  void exchange(const char* op, const void* src, size_t bytes, const std::vector<void*>& dst) {
    const uint64_t slot = next_collective_slot();
    const auto deadline = op_deadline();
    std::vector<Posted> recvs, sends;
    for (int r = 0; r < size_; ++r)
      if (r != rank_) post(op, recvs, r, dst[static_cast<size_t>(r)], bytes, slot, false);
    for (int r = 0; r < size_; ++r)
      if (r != rank_) post(op, sends, r, const_cast<void*>(src), bytes, slot, true);
    // Receives first: a peer that never joined is found here. Sends complete once each peer has
    // posted its receive, which every peer that sent to us already did.
    wait_all(op, recvs, false, deadline);
    wait_all(op, sends, true, deadline);
  }

  void post(const char* op, std::vector<Posted>& out, int peer, void* ptr, size_t bytes,
            uint64_t slot, bool is_send) {
    try {
      auto buf = ctx_->createUnboundBuffer(ptr, bytes);
      if (is_send)
        buf->send(peer, slot);
      else
        buf->recv(peer, slot);
      out.push_back({peer, std::move(buf)});
    } catch (const std::exception& e) {
      lost(op, peer, e.what());
    }
  }

  // Waits for every posted op; on a timeout names every peer whose op had not completed.
  void wait_all(const char* op, std::vector<Posted>& posted, bool is_send,
                Clock::time_point deadline) {
    for (size_t i = 0; i < posted.size(); ++i) {
      bool completed = false;
      try {
        completed = wait_one(posted[i], is_send, deadline);
      } catch (const gloo::IoException& e) {
        if (!is_timeout(e) && Clock::now() < deadline) lost(op, posted[i].peer, e.what());
        std::vector<int> missing{posted[i].peer};
        // Gloo has just closed the pairs; a peer whose message is already here still reads as done.
        for (size_t j = i + 1; j < posted.size(); ++j) {
          bool done = false;
          try {
            done = wait_one(posted[j], is_send, Clock::now() + std::chrono::milliseconds(1));
          } catch (const std::exception&) {
          }
          if (!done) missing.push_back(posted[j].peer);
        }
        timed_out(op, missing);
      } catch (const std::exception& e) {
        lost(op, posted[i].peer, e.what());
      }
      if (!completed) lost(op, posted[i].peer, "the wait was aborted");
    }
  }

  static bool wait_one(Posted& p, bool is_send, Clock::time_point deadline) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (ms.count() < 1) ms = std::chrono::milliseconds(1);
    return is_send ? p.buf->waitSend(nullptr, ms) : p.buf->waitRecv(nullptr, ms);
  }

  void abort_connections() {
    aborted_ = true;
    try {
      if (ctx_) ctx_->closeConnections();
    } catch (const std::exception&) {
      // Best effort: the pairs may already be closed by Gloo's own timeout handling.
    }
  }

  [[noreturn]] void timed_out(const char* op, const std::vector<int>& missing) {
    abort_connections();
    fail(ErrorCode::kDeadlineExceeded, "group ", name_, ": ", op, " on rank ", rank_,
         " timed out after ", timeout_, " s waiting for rank ", group_util::rank_list(missing));
  }

  [[noreturn]] void lost(const char* op, int peer, std::string_view why) {
    abort_connections();
    // The peer may have died, or may itself have aborted (closing its connections) because a
    // third rank failed; that rank's own error then names the root cause.
    fail(ErrorCode::kUnavailable, "group ", name_, ": ", op, " on rank ", rank_,
         " failed: lost the connection to rank ", peer,
         " (it died or gave up on the group; gloo: ", why, ")");
  }

  // An all_reduce_sum_async in flight: its posted buffers, the peers' data, and the tensor (kept
  // open, for the guarded device, until the sum is written).
  struct AllReduceWork final : Work {
    AllReduceWork(GlooCommunicator* c, const Tensor& t) : c(c), t(t), open{&this->t} {}
    ~AllReduceWork() override { group_util::wait_dropping_error(*this); }
    void wait() override {
      if (!posted) return;
      posted = false;
      const char* op = "all_reduce_sum";
      c->wait_all(op, recvs, false, deadline);
      c->wait_all(op, sends, true, deadline);
      const size_t n = static_cast<size_t>(t.numel());
      std::vector<float> sum(n, 0.0f);
      for (int r = 0; r < c->size_; ++r) {
        const float* f =
            r == c->rank_ ? t.data_as<float>() : scratch[static_cast<size_t>(r)].data();
        for (size_t i = 0; i < n; ++i) sum[i] += f[i];
      }
      std::memcpy(t.data(), sum.data(), n * sizeof(float));
    }
    GlooCommunicator* c;
    Tensor t;
    HostAccess open;
    bool posted = false;
    Clock::time_point deadline;
    std::vector<std::vector<float>> scratch;
    std::vector<Posted> recvs, sends;
  };

  // A send_async / recv_async in flight: its posted buffer and the tensor (kept open, for the
  // guarded device, until the message has moved).
  struct P2PWork final : Work {
    P2PWork(GlooCommunicator* c, const Tensor& t, const char* op, bool is_send)
        : c(c), t(t), open{&this->t}, op(op), is_send(is_send) {}
    ~P2PWork() override { group_util::wait_dropping_error(*this); }
    void wait() override {
      if (!posted) return;
      posted = false;
      c->wait_all(op, buf, is_send, deadline);
    }
    GlooCommunicator* c;
    Tensor t;
    HostAccess open;
    const char* op;
    bool is_send;
    bool posted = false;
    Clock::time_point deadline;
    std::vector<Posted> buf;
  };

  std::unique_ptr<Work> post_p2p(const char* op, const Tensor& t, int peer, bool is_send) {
    check_usable(op);
    check_cpu(t, op);
    check_peer(peer, op);
    auto w = std::make_unique<P2PWork>(this, t, op, is_send);
    auto& seq = is_send ? send_seq_ : recv_seq_;
    const uint64_t slot = is_send ? p2p_slot(rank_, peer, seq[static_cast<size_t>(peer)]++)
                                  : p2p_slot(peer, rank_, seq[static_cast<size_t>(peer)]++);
    w->deadline = op_deadline();
    post(op, w->buf, peer, t.data(), t.nbytes(), slot, is_send);
    w->posted = true;
    return w;
  }

  int rank_, size_;
  std::string name_;
  double timeout_;
  std::shared_ptr<gloo::transport::Device> dev_;
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  uint64_t collective_seq_ = 0;
  std::vector<uint64_t> send_seq_, recv_seq_;
  std::vector<std::vector<float>> scratch_;  // all_reduce_sum: peer r's buffer
  std::vector<float> sum_;
  bool aborted_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(const GroupParams& p) {
  group_util::check_params(p, "gloo");
  const auto deadline = group_util::deadline_after(p.timeout_seconds);
  // Our own registration first: Gloo's connect can only say "timed out", this names the ranks.
  group_util::join(p, deadline);
  if (p.size == 1) return std::make_unique<GlooCommunicator>(p, nullptr, nullptr);

  // Gloo writes with writev(), which raises SIGPIPE when a peer has died; the default action
  // would kill this process instead of letting the op report the lost rank. A handler the
  // program installed itself is left alone.
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
    ::signal(SIGPIPE, SIG_IGN);

  gloo::transport::tcp::attr attr;
  attr.hostname = p.bind_host;
  std::shared_ptr<gloo::transport::Device> dev;
  try {
    dev = gloo::transport::tcp::CreateDevice(attr);
  } catch (const std::exception& e) {
    fail(ErrorCode::kUnavailable, "group ", p.name, ": rank ", p.rank,
         " cannot open a Gloo TCP device on ", p.bind_host, ": ", e.what());
  }
  auto ctx = std::make_shared<gloo::rendezvous::Context>(p.rank, p.size);
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  ctx->setTimeout(std::max(left, std::chrono::milliseconds(1)));
  StoreAdapter store(*p.store, p.name + "/gloo/", deadline);
  try {
    ctx->connectFullMesh(store, dev);
  } catch (const Error& e) {
    fail(e.code(), "group ", p.name, ": connect on rank ", p.rank, " failed: ", e.what());
  } catch (const std::exception& e) {
    fail(ErrorCode::kUnavailable, "group ", p.name, ": connect on rank ", p.rank,
         " failed: ", e.what());
  }
  return std::make_unique<GlooCommunicator>(p, std::move(dev), std::move(ctx));
}

bool have_gloo() { return true; }

#else

std::unique_ptr<Communicator> make_gloo_communicator(const GroupParams& p) {
  fail(ErrorCode::kUnsupported, "group ", p.name,
       ": this build has no Gloo (install libgloo-dev and reconfigure)");
}
bool have_gloo() { return false; }

#endif

}  // namespace tessera::comm
