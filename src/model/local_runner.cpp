#include "tessera/model/local_runner.h"

#include <algorithm>
#include <numeric>

#include "tessera/core/error.h"
#include "tessera/model/step_batch.h"

namespace tessera::model {

LocalRunner::LocalRunner(const LlamaModel& model, const LocalRunnerParams& params)
    : model_(model),
      params_(params),
      pool_(
          [&] {
            auto kp = model.kv_shape(params.block_size);
            kp.num_blocks = params.num_blocks;
            kp.dtype = params.kv_dtype;
            return kp;
          }(),
          model.allocator()),
      allocator_(params.num_blocks) {
  if (params.graph_max_batch > 0)
    graphs_ = std::make_unique<DecodeGraphs>(
        model_, pool_, decode_graph_params(model_, pool_.params(), params.graph_max_batch));
}

int LocalRunner::add_sequence() {
  seqs_[next_id_] = Sequence{};
  return next_id_++;
}

void LocalRunner::free_sequence(int seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail(ErrorCode::kNotFound, "no sequence ", seq);
  allocator_.release_all(it->second.blocks);
  seqs_.erase(it);
}

int64_t LocalRunner::length(int seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail(ErrorCode::kNotFound, "no sequence ", seq);
  return it->second.length;
}

Tensor LocalRunner::step(std::span<const Chunk> chunks, bool all_rows) {
  const int bs = params_.block_size;
  // Work out new blocks first so that a step that does not fit changes nothing.
  int needed = 0;
  for (const auto& ch : chunks) {
    const auto& s = seqs_.at(ch.seq);
    if (ch.tokens.empty()) fail(ErrorCode::kInvalidArgument, "empty chunk for sequence ", ch.seq);
    for (int32_t t : ch.tokens)
      if (t < 0 || t >= model_.config().vocab_size)
        fail(ErrorCode::kOutOfRange, "token id ", t, " of sequence ", ch.seq,
             " outside the vocabulary of ", model_.config().vocab_size);
    if (s.length + static_cast<int64_t>(ch.tokens.size()) > model_.config().max_position)
      fail(ErrorCode::kOutOfRange, "sequence ", ch.seq, " would reach ",
           s.length + static_cast<int64_t>(ch.tokens.size()), " tokens, beyond the context of ",
           model_.config().max_position);
    needed += kv_cache::blocks_for(s.length + static_cast<int64_t>(ch.tokens.size()), bs) -
              static_cast<int>(s.blocks.size());
  }
  if (!allocator_.can_allocate(needed))
    fail(ErrorCode::kResourceExhausted, "KV cache full: step needs ", needed, " blocks, ",
         allocator_.num_free(), " free");

  StepBatch step(bs, params_.num_blocks);
  for (const auto& ch : chunks) {
    auto& s = seqs_.at(ch.seq);
    const int64_t new_len = s.length + static_cast<int64_t>(ch.tokens.size());
    const int grow = kv_cache::blocks_for(new_len, bs) - static_cast<int>(s.blocks.size());
    if (grow > 0) {
      auto got = allocator_.allocate(grow);
      TESSERA_CHECK(got.has_value(), "allocation failed after can_allocate");
      s.blocks.insert(s.blocks.end(), got->begin(), got->end());
    }
    step.add(static_cast<uint64_t>(ch.seq), ch.tokens, s.length, s.blocks,
             all_rows ? StepBatch::Logits::kAll : StepBatch::Logits::kLast);
  }
  const ForwardBatch batch = step.batch();
  Tensor logits;
  if (graphs_) logits = graphs_->forward(batch);  // a plain decode step that fits, else undefined
  if (!logits.defined()) logits = model_.forward(batch, pool_);
  for (const auto& ch : chunks) seqs_.at(ch.seq).length += static_cast<int64_t>(ch.tokens.size());
  return logits;
}

}  // namespace tessera::model
