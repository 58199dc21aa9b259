// LocalRunner: runs a LlamaModel for a set of sequences in this process, owning the KV pool, the
// block allocator and each sequence's block table. It is what the CLI and the model tests drive;
// the engine/worker split of the serve issue does the same bookkeeping across processes.
// Not thread-safe: one caller drives it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "tessera/kv_cache/block_allocator.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/decode_graphs.h"
#include "tessera/model/llama.h"

namespace tessera::model {

struct LocalRunnerParams {
  int num_blocks = 256;
  int block_size = 16;
  DType kv_dtype = DType::kF32;  // the pool's element type (kv_cache::KvPoolParams::dtype)
  // > 0: decode steps of up to this many sequences replay device graphs recorded at construction
  // (decode_graphs.h; the model must be graphable; a replayed step's logits are the graph's
  // buffer, valid until the next step on CUDA); 0: every step op by op.
  int graph_max_batch = 0;
};

class LocalRunner {
 public:
  LocalRunner(const LlamaModel& model, const LocalRunnerParams& params);

  int add_sequence();
  void free_sequence(int seq);
  int64_t length(int seq) const;

  struct Chunk {
    int seq = 0;
    std::span<const int32_t> tokens;  // appended after what the sequence already holds
  };
  // One forward over all chunks (prefill chunks and single-token decodes mixed). Returns logits
  // [chunks, vocab] for each chunk's last token, or [all tokens, vocab] when all_rows is set.
  // Throws kResourceExhausted (and changes nothing) when the KV pool cannot hold the step.
  Tensor step(std::span<const Chunk> chunks, bool all_rows = false);

  int free_blocks() const { return allocator_.num_free(); }
  const DecodeGraphs* graphs() const { return graphs_.get(); }

 private:
  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> blocks;
  };
  const LlamaModel& model_;
  LocalRunnerParams params_;
  kv_cache::KvPool pool_;
  kv_cache::BlockAllocator allocator_;
  std::unique_ptr<DecodeGraphs> graphs_;  // after pool_: replays write it
  std::map<int, Sequence> seqs_;
  int next_id_ = 0;
};

}  // namespace tessera::model
