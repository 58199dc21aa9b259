// The shared-memory segment of an intra-node group: creation on rank 0, mapping on the others,
// unlinking once all have mapped, and the futex primitives (see shm_segment.h).
#include "shm_segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <new>
#include <random>

#include "group_util.h"
#include "tessera/core/error.h"

namespace tessera::comm::shm {
namespace {

constexpr uint64_t kMagic = 0x74657373'73686d31ull;  // "tessshm1"
constexpr size_t kSlotBytes = 512 * 1024;

size_t data_offset() { return (sizeof(Header) + 4095) & ~size_t{4095}; }

std::string unique_name() {
  static std::atomic<uint32_t> counter{0};
  std::random_device rd;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "/tessera-shm-%d-%u-%08x", static_cast<int>(::getpid()),
                counter.fetch_add(1), rd());
  return buf;
}

}  // namespace

std::unique_ptr<ShmSegment> ShmSegment::connect(const GroupParams& p,
                                                std::chrono::steady_clock::time_point deadline) {
  if (p.size > kMaxRanks)
    fail(ErrorCode::kInvalidArgument, "group ", p.name, ": shared memory supports at most ",
         kMaxRanks, " ranks, not ", p.size);
  std::unique_ptr<ShmSegment> s(new ShmSegment());
  s->slot_bytes_ = kSlotBytes;
  s->bytes_ = data_offset() + static_cast<size_t>(p.size) * 2 * kSlotBytes;
  s->creator_ = p.rank == 0;
  const std::string key = p.name + "/shm/";
  int fd = -1;
  if (s->creator_) {
    s->name_ = unique_name();
    fd = ::shm_open(s->name_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
      fail(ErrorCode::kUnavailable, "group ", p.name, ": rank 0 cannot create shared memory ",
           s->name_, ": ", std::strerror(errno));
    if (::ftruncate(fd, static_cast<off_t>(s->bytes_)) != 0) {
      const int err = errno;
      ::close(fd);
      ::shm_unlink(s->name_.c_str());
      fail(ErrorCode::kUnavailable, "group ", p.name, ": rank 0 cannot size shared memory ",
           s->name_, " to ", s->bytes_, " bytes: ", std::strerror(err));
    }
  } else {
    s->name_ = p.store->get_string(key + "segment", group_util::seconds_left(deadline));
    fd = ::shm_open(s->name_.c_str(), O_RDWR, 0600);
    if (fd < 0)
      fail(ErrorCode::kUnavailable, "group ", p.name, ": rank ", p.rank,
           " cannot open shared memory ", s->name_, " made by rank 0: ", std::strerror(errno));
  }
  s->base_ = ::mmap(nullptr, s->bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (s->base_ == MAP_FAILED) {
    s->base_ = nullptr;
    fail(ErrorCode::kUnavailable, "group ", p.name, ": rank ", p.rank, " cannot map ", s->name_,
         ": ", std::strerror(map_err));  // the destructor unlinks on rank 0
  }
  s->hdr_ = static_cast<Header*>(s->base_);
  s->data_ = static_cast<uint8_t*>(s->base_) + data_offset();
  if (s->creator_) {
    new (s->hdr_) Header{};  // ftruncate zero-filled it; this makes the atomics' lifetime explicit
    s->hdr_->size = static_cast<uint32_t>(p.size);
    s->hdr_->slot_bytes = static_cast<uint32_t>(kSlotBytes);
    s->hdr_->magic = kMagic;
    p.store->set_string(key + "segment", s->name_);
  } else if (s->hdr_->magic != kMagic || s->hdr_->size != static_cast<uint32_t>(p.size) ||
             s->hdr_->slot_bytes != kSlotBytes) {
    fail(ErrorCode::kInternal, "group ", p.name, ": rank ", p.rank, ": shared memory ", s->name_,
         " has another layout (a different tessera build on the node?)");
  }
  s->ctl(p.rank).pid.store(static_cast<int32_t>(::getpid()));
  if (p.store->add(key + "mapped", 1) == p.size) {
    ::shm_unlink(s->name_.c_str());  // every rank holds a mapping: the name is no longer needed
    p.store->set_string(key + "ready", "1");
  }
  try {
    p.store->get(key + "ready", group_util::seconds_left(deadline));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kDeadlineExceeded) throw;
    fail(ErrorCode::kDeadlineExceeded, "group ", p.name, ": connect on rank ", p.rank,
         " timed out after ", p.timeout_seconds,
         " s waiting for every rank to map the shared memory segment");
  }
  return s;
}

ShmSegment::~ShmSegment() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
  // Normally unlinked already by the last rank to map it; this covers a connect that failed.
  if (creator_ && !name_.empty()) ::shm_unlink(name_.c_str());
}

void ShmSegment::publish(int r, uint32_t seq) {
  RankCtl& c = ctl(r);
  c.seq.store(seq, std::memory_order_seq_cst);
  // Pairs with the sleeper's increment of `waiters` before it re-checks `seq` (both seq_cst):
  // either it sees the new seq, or we see it counted and wake it.
  if (c.waiters.load(std::memory_order_seq_cst) != 0) futex_wake_all(c.seq);
}

void ShmSegment::raise_abort(int r, AbortWhy why) {
  uint32_t none = 0;
  hdr_->abort.compare_exchange_strong(none, encode_abort(r, why));
  for (uint32_t q = 0; q < hdr_->size; ++q) futex_wake_all(hdr_->ranks[q].seq);
}

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, std::chrono::microseconds slice) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(slice.count() / 1000000);
  ts.tv_nsec = static_cast<long>((slice.count() % 1000000) * 1000);
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
            0);
}

bool process_dead(int pid) {
  if (pid <= 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return true;
  std::string line;
  std::getline(f, line);
  // "pid (comm) S ...": the state follows the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  const char state = line[close + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace tessera::comm::shm
