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

#include <cstdint>
#include <type_traits>

namespace tessera::ops::cpu::detail {

using ChunkFn = void (*)(void* ctx, int64_t chunk);

// Runs fn(ctx, c) once for every c in [0, chunks), on up to `threads` threads (the caller
// included), and returns when all have finished. Runs inline when threads <= 1, chunks <= 1, or
// when called from inside a chunk (nested) or an OpenMP region.
void run_chunks(int threads, int64_t chunks, ChunkFn fn, void* ctx);

// The thread count ops use: omp_get_max_threads(), i.e. what --threads / OMP_NUM_THREADS set.
int max_threads();

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
