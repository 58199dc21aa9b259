// Decode steps replayed from device graphs at bucketed batch sizes: a step of n sequences, each
// one new token with its logits wanted, runs as the recorded graph of the smallest bucket B >= n,
// its n rows padded to B (padding rows: token 0 at position 0, slot -1 so nothing is cached, one
// context token read from block 0, their logits ignored). Every graph is recorded at start over a
// persistent buffer of the step's index arrays (detail::pack_step's layout with the block tables at
// a fixed stride, max_blocks_per_seq) that each step overwrites before the replay; the graph's
// activations and logits live in a pool of its own (ops::DeviceGraph).
//
// On CUDA a replay is one graph launch instead of one launch per op (hundreds per token). On other
// devices ops::DeviceGraph re-runs the ops, so the padding and the persistent buffers are tested on
// the CPU and the guarded device (tests/model/decode_graphs_test.cpp). Owned by the worker, used
// from its thread; holds the model and the pool by reference (both outlive it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/llama.h"
#include "tessera/ops/graph.h"

namespace tessera::model {

// The batch sizes recorded: 1, 2, 4, 8, then every 8 up to 64, then every 32, none above
// `max_batch` (1 always; a larger step runs op by op).
std::vector<int> default_decode_buckets(int max_batch);

// The smallest bucket holding n rows; 0 when none does (buckets ascending).
int decode_bucket(std::span<const int> buckets, int n);

// Whether b is a step a decode graph can replay: n >= 1 sequences of one query row each, every
// row's logits wanted in order, no table wider than max_blocks, no expert counters.
bool is_plain_decode(const ForwardBatch& b, int max_blocks);

// b's arrays padded to `bucket` rows in pack_step's layout (tokens, positions, slots, query_start,
// context_lens, block_tables at stride max_blocks, logit_rows) into `out` (resized).
void pad_decode_step(const ForwardBatch& b, int bucket, int max_blocks, std::vector<int32_t>& out);

struct DecodeGraphParams {
  std::vector<int> buckets;    // ascending; each is recorded at construction
  int max_blocks_per_seq = 0;  // the table stride every graph is recorded with (>= 1)
};

// The graphs a model on pool `kp` records for batches up to max_batch: default_decode_buckets,
// tables as wide as the longest sequence the model (max_position) and the pool can hold.
DecodeGraphParams decode_graph_params(const LlamaModel& model, const kv_cache::KvPoolParams& kp,
                                      int max_batch);

class DecodeGraphs {
 public:
  // Records one graph per bucket (model.graphable() must hold). Throws what the recording threw.
  DecodeGraphs(const LlamaModel& model, kv_cache::KvPool& kv, DecodeGraphParams p);
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The logits [n, vocab] of b replayed from its bucket's graph (a view of the graph's buffer,
  // valid until the next call), after the checks forward() makes; an undefined tensor when b is
  // not a plain decode step that fits (the caller runs LlamaModel::forward).
  Tensor forward(const ForwardBatch& b);
  const std::vector<int>& buckets() const { return p_.buckets; }
  bool records() const;                         // true where replays launch recorded graphs (CUDA)
  int64_t replays() const { return replays_; }  // steps served from a graph so far

 private:
  struct Graph;
  const LlamaModel& model_;
  kv_cache::KvPool& kv_;
  DecodeGraphParams p_;
  std::vector<std::unique_ptr<Graph>> graphs_;  // one per bucket, in bucket order
  int64_t replays_ = 0;
};

}  // namespace tessera::model
