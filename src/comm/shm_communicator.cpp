// The shared-memory engine (CPU backend, ranks on one node) and make_cpu_communicator, which
// picks it or Gloo. all_reduce_sum, reduce_scatter_sum, all_gather, broadcast, barrier and
// all_to_all_v go through the group's shared segment; send/recv go through the Gloo communicator
// every shm group also holds (it connects first, and is the whole engine when the ranks are on
// different nodes).
//
// Protocol: every collective is cut into steps of at most one slot; step s uses slot s % 2 of
// every rank. A rank copies its input into its own slot, publishes seq = s, waits until every
// rank has published s, then reads all slots. No rank can overwrite a slot that another still
// reads: writing step s+2 requires finishing step s+1, which requires every rank to have
// published s+1, which each did only after it finished reading step s. all_reduce_sum adds the
// slots in rank order 0..W-1 starting from 0.0f on every rank, exactly as the Gloo engine does,
// so the two engines give bitwise the same result.
//
// Waiting spins (with _mm_pause) for at most spin_us, then sleeps on the peer's seq word (futex)
// in short slices, checking the group's abort word, the op's deadline and whether the peer's
// process is still alive. A rank that times out or loses a peer raises the abort word (so the
// others fail fast), closes its Gloo connections, and is aborted.
//
// Ownership: each rank owns its ShmCommunicator, its mapping and its Gloo communicator; one
// thread at a time, as for every Communicator.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "group_util.h"
#include "shm_segment.h"
#include "tessera/comm/groups.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <unistd.h>

namespace tessera::comm {
namespace {

using Clock = std::chrono::steady_clock;
using shm::AbortWhy;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int spin_us_from_env() {
  const char* v = std::getenv("TESSERA_SHM_SPIN_US");
  return v != nullptr ? std::max(0, std::atoi(v)) : 50;
}

class ShmCommunicator final : public Communicator {
 public:
  ShmCommunicator(const GroupParams& p, std::unique_ptr<Communicator> gloo,
                  std::unique_ptr<shm::ShmSegment> seg)
      : rank_(p.rank),
        size_(p.size),
        name_(p.name),
        timeout_(p.timeout_seconds),
        spin_(std::chrono::microseconds(spin_us_from_env())),
        gloo_(std::move(gloo)),
        seg_(std::move(seg)) {}

  ~ShmCommunicator() override {
    stop_async();
    seg_->ctl(rank_).pid.store(-1);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string engine() const override { return "shm"; }
  bool aborted() const override { return aborted_ || (gloo_ && gloo_->aborted()); }

  void all_reduce_sum(Tensor& t) override {
    const char* op = "all_reduce_sum";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    if (t.dtype() != DType::kF32)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": needs F32, got ", t.str());
    const size_t n = static_cast<size_t>(t.numel());
    if (n == 0) return;
    const auto deadline = op_deadline();
    float* data = t.data_as<float>();
    const size_t per_step = seg_->slot_bytes() / sizeof(float);
    for (size_t off = 0; off < n; off += per_step) {
      const size_t m = std::min(per_step, n - off);
      const uint32_t s = ++seq_;
      std::memcpy(seg_->slot(rank_, s), data + off, m * sizeof(float));
      seg_->publish(rank_, s);
      wait_all(op, s, deadline);
      // Rank order from 0.0f, as the Gloo engine sums: bitwise the same result (-0.0 included).
      float* out = data + off;
      const auto* f0 = reinterpret_cast<const float*>(seg_->slot(0, s));
      for (size_t i = 0; i < m; ++i) out[i] = 0.0f + f0[i];
      for (int r = 1; r < size_; ++r) {
        const auto* f = reinterpret_cast<const float*>(seg_->slot(r, s));
        for (size_t i = 0; i < m; ++i) out[i] += f[i];
      }
    }
  }

  // Each step carries a chunk of every block: rank q writes chunk r of its input at r*m in its
  // slot, and rank r sums the chunks at r*m of every slot in rank order from 0.0f (bitwise
  // all_reduce_sum's result); each rank reads 1/size of what all_reduce_sum reads.
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    const char* op = "reduce_scatter_sum";
    check_usable(op);
    check_cpu(in, op);
    check_cpu(out, op);
    const HostAccess open{&in, &out};
    const size_t n = group_util::reduce_scatter_block(name_, size_, in, out);
    if (n == 0) return;
    const auto deadline = op_deadline();
    const float* src = in.data_as<float>();
    float* dst = out.data_as<float>();
    const size_t per_step = seg_->slot_bytes() / sizeof(float) / static_cast<size_t>(size_);
    for (size_t off = 0; off < n; off += per_step) {
      const size_t m = std::min(per_step, n - off);
      const uint32_t s = ++seq_;
      auto* slot = reinterpret_cast<float*>(seg_->slot(rank_, s));
      for (int r = 0; r < size_; ++r)
        std::memcpy(slot + static_cast<size_t>(r) * m, src + static_cast<size_t>(r) * n + off,
                    m * sizeof(float));
      seg_->publish(rank_, s);
      wait_all(op, s, deadline);
      const size_t at = static_cast<size_t>(rank_) * m;
      const auto* f0 = reinterpret_cast<const float*>(seg_->slot(0, s)) + at;
      for (size_t i = 0; i < m; ++i) dst[off + i] = 0.0f + f0[i];
      for (int r = 1; r < size_; ++r) {
        const auto* f = reinterpret_cast<const float*>(seg_->slot(r, s)) + at;
        for (size_t i = 0; i < m; ++i) dst[off + i] += f[i];
      }
    }
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
    const auto deadline = op_deadline();
    const auto* src = static_cast<const uint8_t*>(in.data());
    auto* dst = static_cast<uint8_t*>(out.data());
    for (size_t off = 0; off < bytes; off += seg_->slot_bytes()) {
      const size_t m = std::min(seg_->slot_bytes(), bytes - off);
      const uint32_t s = ++seq_;
      std::memcpy(seg_->slot(rank_, s), src + off, m);
      seg_->publish(rank_, s);
      wait_all(op, s, deadline);
      for (int r = 0; r < size_; ++r)
        std::memcpy(dst + static_cast<size_t>(r) * bytes + off, seg_->slot(r, s), m);
    }
  }

  void broadcast(Tensor& t, int root) override {
    const char* op = "broadcast";
    check_usable(op);
    check_cpu(t, op);
    const HostAccess open{&t};
    if (root < 0 || root >= size_)
      fail(ErrorCode::kInvalidArgument, name_, " ", op, ": rank ", root, " is not in a group of ",
           size_);
    const size_t bytes = t.nbytes();
    if (bytes == 0) return;
    const auto deadline = op_deadline();
    auto* data = static_cast<uint8_t*>(t.data());
    for (size_t off = 0; off < bytes; off += seg_->slot_bytes()) {
      const size_t m = std::min(seg_->slot_bytes(), bytes - off);
      const uint32_t s = ++seq_;
      if (rank_ == root) std::memcpy(seg_->slot(rank_, s), data + off, m);
      seg_->publish(rank_, s);  // every rank publishes every step: see the protocol above
      wait_all(op, s, deadline);
      if (rank_ != root) std::memcpy(data + off, seg_->slot(root, s), m);
    }
  }

  void barrier() override {
    const char* op = "barrier";
    check_usable(op);
    const uint32_t s = ++seq_;
    seg_->publish(rank_, s);
    wait_all(op, s, op_deadline());
  }

  // Through the segment: step k's slot holds, after a small header, chunk k of this rank's block
  // for each rank r at r x chunk; rank r copies chunk k of its block out of every peer's slot.
  // The header carries the steps this rank needs (its largest block to send or receive, in
  // chunks, at least 1); every rank reads all of them at step 0, so all run the same number of
  // steps. Its own block is copied directly.
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                    const std::vector<int64_t>& recv_rows) override {
    const char* op = "all_to_all_v";
    check_usable(op);
    check_cpu(in, op);
    check_cpu(out, op);
    const HostAccess open{&in, &out};
    const auto l =
        group_util::all_to_all_layout(name_, rank_, size_, in, send_rows, out, recv_rows);
    const auto* src = static_cast<const uint8_t*>(in.data());
    auto* dst = static_cast<uint8_t*>(out.data());
    const auto me = static_cast<size_t>(rank_);
    group_util::copy_own_block(l, rank_, in, out);
    constexpr size_t kHead = 64;
    const size_t chunk = ((seg_->slot_bytes() - kHead) / static_cast<size_t>(size_)) & ~size_t{63};
    uint64_t need = 1;
    for (size_t r = 0; r < static_cast<size_t>(size_); ++r)
      if (r != me)
        need = std::max<uint64_t>(need, std::max((l.send_bytes[r] + chunk - 1) / chunk,
                                                 (l.recv_bytes[r] + chunk - 1) / chunk));
    const auto deadline = op_deadline();
    uint64_t steps = 1;
    for (uint64_t k = 0; k < steps; ++k) {
      const uint32_t s = ++seq_;
      uint8_t* mine = seg_->slot(rank_, s);
      std::memcpy(mine, &need, sizeof need);
      const size_t at = static_cast<size_t>(k) * chunk;
      for (size_t r = 0; r < static_cast<size_t>(size_); ++r)
        if (r != me && at < l.send_bytes[r])
          std::memcpy(mine + kHead + r * chunk, src + l.send_off[r] + at,
                      std::min(chunk, l.send_bytes[r] - at));
      seg_->publish(rank_, s);
      wait_all(op, s, deadline);
      if (k == 0)
        for (int q = 0; q < size_; ++q) {
          uint64_t theirs = 0;
          std::memcpy(&theirs, seg_->slot(q, s), sizeof theirs);
          steps = std::max(steps, theirs);
        }
      for (size_t q = 0; q < static_cast<size_t>(size_); ++q)
        if (q != me && at < l.recv_bytes[q])
          std::memcpy(dst + l.recv_off[q] + at,
                      seg_->slot(static_cast<int>(q), s) + kHead + me * chunk,
                      std::min(chunk, l.recv_bytes[q] - at));
    }
  }
  void send(const Tensor& t, int peer) override {
    check_usable("send");
    p2p([&] { gloo_->send(t, peer); });
  }
  void recv(Tensor& t, int peer) override {
    check_usable("recv");
    p2p([&] { gloo_->recv(t, peer); });
  }
  // Gloo's own (full-duplex) async send/recv; its error comes from wait(), and fails the shm
  // side too, as the blocking calls do.
  std::unique_ptr<Work> send_async(const Tensor& t, int peer) override {
    check_usable("send");
    auto w = std::make_unique<P2PWork>(this);
    p2p([&] { w->inner = w->gloo->send_async(t, peer); });
    return w;
  }
  std::unique_ptr<Work> recv_async(Tensor& t, int peer) override {
    check_usable("recv");
    auto w = std::make_unique<P2PWork>(this);
    p2p([&] { w->inner = w->gloo->recv_async(t, peer); });
    return w;
  }

 private:
  // Holds the Gloo communicator, which an abort drops from gloo_ (closing its pairs), until the
  // op in flight on it is over. The ShmCommunicator must outlive the work, as any communicator.
  struct P2PWork final : Work {
    explicit P2PWork(ShmCommunicator* c) : c(c), gloo(c->gloo_) {}
    ~P2PWork() override { group_util::wait_dropping_error(*this); }
    void wait() override {
      if (!inner) return;
      auto w = std::move(inner);
      if (c->gloo_ == gloo)
        c->p2p([&] { w->wait(); });
      else
        w->wait();  // the group aborted meanwhile
    }
    ShmCommunicator* c;
    std::shared_ptr<Communicator> gloo;
    std::unique_ptr<Work> inner;
  };

  Clock::time_point op_deadline() const {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
  }

  // Every blocking op starts here: async ops issued before it run first (communicator.h).
  void check_usable(const char* op) {
    drain_async();
    if (aborted())
      fail(ErrorCode::kUnavailable, "group ", name_, ": ", op, " on rank ", rank_,
           ": the communicator was aborted by an earlier failure");
  }
  void check_cpu(const Tensor& t, const char* op) const {
    if (!t.defined() || !t.is_contiguous() || !t.storage()->host_addressable())
      fail(ErrorCode::kInvalidArgument, name_, " ", op,
           ": needs a contiguous CPU or guarded-device tensor, got ",
           t.defined() ? t.str() : std::string("an undefined tensor"));
  }

  // Gloo's own errors already name the group, op and peer; a failed p2p op also fails the
  // shm side so that the collectives' peers do not wait out their timeouts.
  template <typename F>
  void p2p(F&& f) {
    try {
      f();
    } catch (const Error& e) {
      if (gloo_->aborted())
        abort(e.code() == ErrorCode::kDeadlineExceeded ? AbortWhy::kTimeout : AbortWhy::kLostPeer);
      throw;
    }
  }

  void wait_all(const char* op, uint32_t s, Clock::time_point deadline) {
    for (int r = 0; r < size_; ++r)
      if (r != rank_) wait_for(op, r, s, deadline);
  }

  void wait_for(const char* op, int r, uint32_t s, Clock::time_point deadline) {
    shm::RankCtl& c = seg_->ctl(r);
    std::atomic<uint32_t>& abort_word = seg_->header().abort;
    if (shm::seq_reached(c.seq.load(std::memory_order_acquire), s)) return;
    // Bounded spin: a peer on another core usually arrives within microseconds.
    const auto spin_until = Clock::now() + spin_;
    for (uint32_t i = 1;; ++i) {
      if (shm::seq_reached(c.seq.load(std::memory_order_acquire), s)) return;
      cpu_relax();
      if ((i & 63u) == 0 && (Clock::now() >= spin_until || abort_word.load() != 0)) break;
    }
    // Then sleep on the peer's word in slices, checking everything that can end the wait.
    auto next_liveness = Clock::now();
    for (;;) {
      c.waiters.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t v = c.seq.load(std::memory_order_seq_cst);
      const bool reached = shm::seq_reached(v, s);
      if (!reached && abort_word.load() == 0) shm::futex_wait(c.seq, v, slice(deadline));
      c.waiters.fetch_sub(1, std::memory_order_seq_cst);
      if (reached || shm::seq_reached(c.seq.load(std::memory_order_acquire), s)) return;
      if (const uint32_t a = abort_word.load(); a != 0) peer_aborted(op, s, a);
      const auto now = Clock::now();
      if (now >= deadline) timed_out(op, s);
      if (now >= next_liveness) {
        const int pid = c.pid.load();
        if (pid == -1) lost(op, r, "left the group (its communicator was destroyed)");
        if (shm::process_dead(pid))
          lost(op, r, "died (process " + std::to_string(pid) + " is gone)");
        next_liveness = now + std::chrono::milliseconds(50);
      }
    }
  }

  static std::chrono::microseconds slice(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    return std::clamp(left, std::chrono::microseconds(1), std::chrono::microseconds(5000));
  }

  std::vector<int> missing(uint32_t s, int except) {
    std::vector<int> m;
    for (int q = 0; q < size_; ++q)
      if (q != rank_ && q != except && !shm::seq_reached(seg_->ctl(q).seq.load(), s))
        m.push_back(q);
    return m;
  }

  void abort(AbortWhy why) {
    aborted_ = true;
    seg_->raise_abort(rank_, why);
    gloo_.reset();  // closes the TCP pairs: peers blocked in send/recv fail at once
  }

  [[noreturn]] void timed_out(const char* op, uint32_t s) {
    const auto m = missing(s, -1);
    abort(AbortWhy::kTimeout);
    fail(ErrorCode::kDeadlineExceeded, "group ", name_, ": ", op, " on rank ", rank_,
         " timed out after ", timeout_, " s waiting for rank ", group_util::rank_list(m));
  }

  [[noreturn]] void lost(const char* op, int peer, const std::string& why) {
    abort(AbortWhy::kLostPeer);
    fail(ErrorCode::kUnavailable, "group ", name_, ": ", op, " on rank ", rank_, " failed: rank ",
         peer, " ", why);
  }

  // Another rank gave up first. If it gave up at its deadline and ranks are still missing here,
  // this rank has waited as long (all ranks start an op together): report the same timeout.
  [[noreturn]] void peer_aborted(const char* op, uint32_t s, uint32_t word) {
    const int who = shm::abort_rank(word);
    const auto m = missing(s, who);
    aborted_ = true;
    gloo_.reset();
    if (shm::abort_why(word) == AbortWhy::kTimeout && !m.empty())
      fail(ErrorCode::kDeadlineExceeded, "group ", name_, ": ", op, " on rank ", rank_,
           " timed out waiting for rank ", group_util::rank_list(m), " (rank ", who,
           " reached its ", timeout_, " s deadline first)");
    fail(ErrorCode::kUnavailable, "group ", name_, ": ", op, " on rank ", rank_, " failed: rank ",
         who, " gave up on the group",
         shm::abort_why(word) == AbortWhy::kLostPeer ? " (it lost a peer)" : "",
         m.empty() ? std::string() : "; still waiting for rank " + group_util::rank_list(m));
  }

  int rank_, size_;
  std::string name_;
  double timeout_;
  std::chrono::microseconds spin_;
  std::shared_ptr<Communicator> gloo_;  // send/recv; reset when the group aborts
  std::unique_ptr<shm::ShmSegment> seg_;
  uint32_t seq_ = 0;
  bool aborted_ = false;
};

std::string read_first_line(const char* path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

// What makes two ranks "on one node" for shared memory: the same host name and kernel boot.
std::string node_identity(const GroupParams& p) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const char* env = std::getenv("TESSERA_COMM_SHM");
  const bool want =
      p.intra_node_shm && p.size <= shm::kMaxRanks && !(env != nullptr && std::string(env) == "0");
  return std::string(host) + "/" + read_first_line("/proc/sys/kernel/random/boot_id") +
         (want ? "" : "/no-shm");
}

}  // namespace

std::unique_ptr<Communicator> make_cpu_communicator(const GroupParams& p) {
  group_util::check_params(p, "cpu");
  const auto deadline = group_util::deadline_after(p.timeout_seconds);
  auto gloo = make_gloo_communicator(p);  // registers, connects, and names missing ranks
  if (p.size == 1) return gloo;
  const std::string key = p.name + "/shm/node/";
  const std::string mine = node_identity(p);
  p.store->set_string(key + std::to_string(p.rank), mine);
  bool one_node = mine.find("/no-shm") == std::string::npos;
  for (int r = 0; r < p.size; ++r)
    if (r != p.rank &&
        p.store->get_string(key + std::to_string(r), group_util::seconds_left(deadline)) != mine)
      one_node = false;
  if (!one_node) {
    if (p.rank == 0)
      TESSERA_LOG_INFO("group {}: ranks on several nodes (or shared memory disabled): Gloo",
                       p.name);
    return gloo;
  }
  auto seg = shm::ShmSegment::connect(p, deadline);
  if (p.rank == 0)
    TESSERA_LOG_INFO("group {}: {} ranks on one node: shared memory", p.name, p.size);
  return std::make_unique<ShmCommunicator>(p, std::move(gloo), std::move(seg));
}

}  // namespace tessera::comm
