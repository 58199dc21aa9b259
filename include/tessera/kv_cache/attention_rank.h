// Data-parallel attention (expert parallelism with `parallel.expert_attention: data`): which of
// the `ranks` EP ranks of a stage holds a sequence's KV cache, runs its attention and samples it.
// A function of the sequence id alone, so it is stable for the sequence's life (preemption keeps
// the id) and its cache never moves; the scheduler uses it to take the sequence's blocks from
// that rank's allocator (each rank has its own blocks and prefix cache), and the worker to pick
// its sequences out of every plan.
#pragma once

#include <cstdint>

namespace tessera::kv_cache {

inline int attention_rank(uint64_t seq_id, int ranks) {
  return ranks > 1 ? static_cast<int>(seq_id % static_cast<uint64_t>(ranks)) : 0;
}

}  // namespace tessera::kv_cache
