// The ops' chunk pool (see parallel.h). A job's chunks are cut into one contiguous segment per
// thread; each thread claims its own segment's chunks in ascending order and, when that is empty,
// takes the remaining chunks of the others (in the same order). Why segments: decode's matmuls are
// streams of weight bytes, and a thread that claimed chunks from one shared counter read 48 KiB
// here, 48 KiB two chunks further on, so the hardware prefetcher restarted at every chunk; a
// segment is one ascending stream per thread, and a late or slow thread's remainder is still
// taken by the others.
//
// A job is published as a new epoch: each segment's counter holds epoch << 32 | next chunk, and
// every claim is a compare-exchange that names the epoch, so a worker holding a stale view of the
// job (it read the parameters, then was descheduled while the job finished and the next one was
// published) can never run a chunk of the wrong job: its claim fails and it re-reads. A claimed
// chunk keeps its job alive (the caller waits for `done_`), which is what makes reading the job's
// parameters before the claim safe. All atomics are sequentially consistent: the loads are free on
// x86 and the proof above relies on one order. A finished job closes every segment of its epoch
// (next chunk all ones) before the next job's parameters are written, so a claim can only succeed
// on the epoch whose parameters the claimer may have read.
#include "parallel.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera::ops::cpu::detail {
namespace {

constexpr uint64_t kChunkMask = 0xffffffffu;
// How long an idle worker polls for the next job before sleeping on a futex. Decode issues ops
// back to back with a few microseconds of serial work between them, so a short spin catches the
// next one without a wake-up syscall, while an idle process stops burning a shared core quickly.
constexpr auto kSpin = std::chrono::microseconds(100);

// True on pool workers, and on a caller while it runs chunks: a parallel_for from inside a chunk
// runs inline (the pool is busy with the outer job, and its mutex is held).
thread_local bool t_in_job = false;

class Pool {
 public:
  ~Pool() {
    stop_ = true;
    epoch_word_.fetch_add(1);
    epoch_word_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void hint(std::span<const PrefetchRange> ranges) {
    const size_t n = std::min(ranges.size(), kMaxPrefetchRanges);
    for (size_t i = 0; i < n; ++i) {
      hint_[i].worker.store(ranges[i].worker);
      hint_[i].p.store(ranges[i].p);
      hint_[i].bytes.store(ranges[i].bytes);
    }
    hint_count_.store(static_cast<int>(n));
    hint_seq_.fetch_add(1);
  }

  void run(int threads, int64_t chunks, ChunkFn fn, void* ctx) {
    std::lock_guard<std::mutex> lock(run_mu_);
    threads = std::min(threads, kMaxThreads);
    while (static_cast<int>(workers_.size()) < threads - 1) {
      const int id = static_cast<int>(workers_.size());
      workers_.emplace_back([this, id] { worker_loop(id); });
    }
    const int segments = static_cast<int>(std::min<int64_t>(threads, chunks));
    fn_ = fn;
    ctx_ = ctx;
    chunks_ = chunks;
    segments_ = segments;
    active_workers_ = threads - 1;
    done_ = 0;
    const uint64_t epoch = (ticket_.load() >> 32) + 1;
    for (int s = 0; s < segments; ++s)
      segment_[s].next.store(epoch << 32 |
                             static_cast<uint64_t>(segment_begin(s, chunks, segments)));
    ticket_.store(epoch << 32);
    epoch_word_.store(static_cast<uint32_t>(epoch));
    if (sleepers_.load() > 0) epoch_word_.notify_all();
    t_in_job = true;
    claim_and_run(epoch, 0, fn, ctx, chunks, segments);
    t_in_job = false;
    // Wait only for chunks other threads have claimed and are running.
    for (int spins = 0; done_.load() < chunks; ++spins) {
      if (spins < 4096)
        _mm_pause();
      else
        std::this_thread::yield();
    }
    // Close the epoch before the next job's parameters are stored. Without this, a worker holding
    // this epoch could read the next job's (larger) chunk count, claim chunk `chunks` of this
    // epoch and run it with the next job's function: that chunk then ran twice (seen in
    // ChunkPoolTest as a chunk hit twice). A closed segment's next chunk is above any chunk count.
    for (int s = 0; s < segments; ++s) segment_[s].next.store(epoch << 32 | kChunkMask);
  }

 private:
  // Threads one job runs on (one segment each): --threads above this uses this many for the ops.
  static constexpr int kMaxThreads = 256;

  // Claims chunks of job `epoch`: segment `first`'s, then the others' in turn, until every
  // segment is exhausted or the job has been replaced.
  void claim_and_run(uint64_t epoch, int first, ChunkFn fn, void* ctx, int64_t chunks,
                     int segments) {
    if (segments < 1 || segments > kMaxThreads) return;  // a stale view of a later job
    for (int i = 0; i < segments; ++i) {
      const int s = (first + i) % segments;
      const auto end = static_cast<uint64_t>(segment_begin(s + 1, chunks, segments));
      std::atomic<uint64_t>& next = segment_[s].next;
      uint64_t t = next.load();
      while ((t >> 32) == epoch && (t & kChunkMask) < end) {
        if (next.compare_exchange_weak(t, t + 1)) {
          fn(ctx, static_cast<int64_t>(t & kChunkMask));
          done_.fetch_add(1);
          t = next.load();
        }
      }
      if ((t >> 32) != epoch) return;  // the job is over
    }
  }

  // Prefetches worker `id`'s hinted ranges, up to the moment a job after `seen` is published.
  void take_hint(int id, uint64_t seen) {
    const int n = hint_count_.load();
    for (int i = 0; i < n; ++i) {
      if (hint_[i].worker.load() != id) continue;
      const char* p = static_cast<const char*>(hint_[i].p.load());
      const size_t bytes = hint_[i].bytes.load();
      for (size_t l = 0; l < bytes; l += 64) {
        _mm_prefetch(p + l, _MM_HINT_T0);
        // A job: stop. Checked every 1 KiB, since a prefetch waits for a free fill buffer.
        if ((l & 1023) == 960 && (ticket_.load() >> 32) != seen) return;
      }
    }
  }

  void worker_loop(int id) {
    t_in_job = true;
    uint64_t seen = 0, hint_seen = 0;
    while (!stop_) {
      uint64_t t = ticket_.load();
      if ((t >> 32) == seen) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        for (int i = 0; (ticket_.load() >> 32) == seen && !stop_; ++i) {
          if (const uint64_t h = hint_seq_.load(); h != hint_seen) {
            hint_seen = h;
            take_hint(id, seen);
            continue;
          }
          _mm_pause();
          if ((i & 255) == 255 && std::chrono::steady_clock::now() > until) {
            sleepers_.fetch_add(1);
            // Re-check after announcing ourselves, so a publish in between is not missed.
            if ((ticket_.load() >> 32) == seen && !stop_)
              epoch_word_.wait(static_cast<uint32_t>(seen));
            sleepers_.fetch_sub(1);
          }
        }
        continue;
      }
      seen = t >> 32;
      if (id >= active_workers_.load()) continue;
      // Parameters of epoch `seen` (or of a later job: then every claim below fails).
      claim_and_run(seen, id + 1, fn_.load(), ctx_.load(), chunks_.load(), segments_.load());
    }
  }

  struct alignas(64) Segment {
    std::atomic<uint64_t> next{0};  // epoch << 32 | next chunk to hand out
  };

  std::mutex run_mu_;  // one job at a time; callers from several threads queue here
  std::vector<std::thread> workers_;
  Segment segment_[kMaxThreads];
  alignas(64) std::atomic<uint64_t> ticket_{0};  // epoch << 32: a new job
  std::atomic<uint32_t> epoch_word_{0};          // low bits of the epoch, for futex sleeping
  std::atomic<int> sleepers_{0};
  std::atomic<ChunkFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> chunks_{0};
  std::atomic<int> segments_{0};
  std::atomic<int> active_workers_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  std::atomic<bool> stop_{false};
  // The latest hint (hint_prefetch): its ranges, how many, and a sequence number that tells a
  // worker a new one came. Fields are atomics so a worker reading while the caller replaces them
  // reads some range of the old or the new hint, each a harmless prefetch.
  struct HintRange {
    std::atomic<int> worker{0};
    std::atomic<const void*> p{nullptr};
    std::atomic<size_t> bytes{0};
  };
  alignas(64) HintRange hint_[kMaxPrefetchRanges];
  std::atomic<int> hint_count_{0};
  std::atomic<uint64_t> hint_seq_{0};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int max_threads() { return omp_get_max_threads(); }

void hint_prefetch(std::span<const PrefetchRange> ranges) {
  if (ranges.empty() || t_in_job) return;
  pool().hint(ranges);
}

void run_chunks(int threads, int64_t chunks, ChunkFn fn, void* ctx) {
  // (More than 2^31 chunks cannot be counted in the ticket; no op comes near that.)
  if (threads <= 1 || chunks <= 1 || chunks > (int64_t{1} << 31) || t_in_job || omp_in_parallel()) {
    for (int64_t c = 0; c < chunks; ++c) fn(ctx, c);
    return;
  }
  pool().run(threads, chunks, fn, ctx);
}

}  // namespace tessera::ops::cpu::detail
