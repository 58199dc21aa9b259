// StepBatch: the one builder of a forward step's ForwardBatch from per-sequence chunks (new tokens,
// the position of the first, the sequence's block table). The worker (from an ExecutePlan) and
// the LocalRunner (CLI, tests) both build their steps here, so the slot arithmetic, the padding of
// block tables and the host-side checks exist once. Owns the arrays the ForwardBatch points into;
// one caller, one step.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/model/llama.h"

namespace tessera::model {

class StepBatch {
 public:
  // Which of a chunk's token rows want logits.
  enum class Logits { kNone, kLast, kAll };

  // Blocks hold `block_size` tokens; block ids must be below `num_blocks`.
  StepBatch(int block_size, int num_blocks) : block_size_(block_size), num_blocks_(num_blocks) {}

  // Appends a chunk: `tokens` at positions start_pos.., written through `block_table` (which must
  // cover every position up to the last). Throws kInvalidArgument / kOutOfRange naming `seq_id`
  // for an empty chunk, a short table or a block outside the pool; the batch is then unchanged.
  void add(uint64_t seq_id, std::span<const int32_t> tokens, int64_t start_pos,
           std::span<const int32_t> block_table, Logits logits);

  // The step, valid while this object lives and is not added to.
  ForwardBatch batch();
  size_t num_tokens() const { return tokens_.size(); }
  size_t num_logit_rows() const { return logit_rows_.size(); }

 private:
  int block_size_, num_blocks_;
  std::vector<int32_t> tokens_, positions_, slots_, query_start_{0}, context_lens_, logit_rows_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<int32_t> flat_tables_;
};

}  // namespace tessera::model
