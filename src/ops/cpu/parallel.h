// Private to the CPU ops: the thread pool that splits an op's work into chunks. Owns the worker
// threads of the process (one pool, like the OpenMP runtime it replaces for the ops; the thread
// count still follows omp_set_num_threads / OMP_NUM_THREADS).
//
// Why not `#pragma omp parallel`: decode runs ~250 small parallel ops per token, and every OpenMP
// region ends in a barrier that waits for every team thread. On a shared machine a worker that the
// kernel has descheduled holds that barrier for a whole time slice (milliseconds), which made two
// threads four times slower than one. Here the calling thread takes chunks too, each thread claims
// the chunks of its own contiguous segment first and then what is left of the others', and the
// caller waits only for chunks that were actually claimed: a worker that wakes late finds nothing
// left and the op has already returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

namespace tessera::ops::cpu::detail {

using ChunkFn = void (*)(void* ctx, int64_t chunk);

// Runs fn(ctx, c) once for every c in [0, chunks), on up to `threads` threads (the caller
// included), and returns when all have finished. Runs inline when threads <= 1, chunks <= 1, or
// when called from inside a chunk (nested) or an OpenMP region.
void run_chunks(int threads, int64_t chunks, ChunkFn fn, void* ctx);

// The thread count ops use: omp_get_max_threads(), i.e. what --threads / OMP_NUM_THREADS set.
int max_threads();

// The first chunk of segment s when `chunks` are cut into `segments` (run_chunks' cut: thread 0,
// the caller, takes segment 0 first, pool worker w segment w + 1).
inline int64_t segment_begin(int s, int64_t chunks, int segments) { return s * chunks / segments; }

// Bytes an idle pool worker may read ahead of the job that will need them: `worker` (0-based, the
// one that takes segment worker + 1 first) prefetches [p, p + bytes).
struct PrefetchRange {
  int worker = 0;
  const void* p = nullptr;
  size_t bytes = 0;
};
inline constexpr size_t kMaxPrefetchRanges = 16;
// Hands the ranges (at most kMaxPrefetchRanges; more are dropped) to the pool's workers, replacing
// any not yet taken, and returns at once. A worker spinning for its next job prefetches its own
// ranges' lines and stops as soon as a job is published; a sleeping worker or one in a job ignores
// them. A hint only: prefetching never faults and changes no result.
void hint_prefetch(std::span<const PrefetchRange> ranges);

// parallel_for(chunks, f): f(c) for c in [0, chunks) on max_threads() threads when `parallel`.
template <typename F>
void parallel_for(int64_t chunks, F&& f, bool parallel = true) {
  using Fn = std::remove_reference_t<F>;
  run_chunks(
      parallel ? max_threads() : 1, chunks,
      [](void* ctx, int64_t c) { (*static_cast<Fn*>(ctx))(c); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace tessera::ops::cpu::detail
