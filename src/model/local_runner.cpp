#include "tessera/model/local_runner.h"

#include <algorithm>
#include <numeric>

#include "tessera/core/error.h"

namespace tessera::model {

LocalRunner::LocalRunner(const LlamaModel& model, const LocalRunnerParams& params)
    : model_(model),
      params_(params),
      pool_(
          [&] {
            auto kp = model.kv_shape(params.block_size);
            kp.num_blocks = params.num_blocks;
            return kp;
          }(),
          model.allocator()),
      allocator_(params.num_blocks) {}

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

  std::vector<int32_t> tokens, positions, slots, query_start{0}, context_lens, logit_rows;
  size_t max_blocks = 0;
  for (const auto& ch : chunks) {
    auto& s = seqs_.at(ch.seq);
    const int64_t new_len = s.length + static_cast<int64_t>(ch.tokens.size());
    const int grow = kv_cache::blocks_for(new_len, bs) - static_cast<int>(s.blocks.size());
    if (grow > 0) {
      auto got = allocator_.allocate(grow);
      TESSERA_CHECK(got.has_value(), "allocation failed after can_allocate");
      s.blocks.insert(s.blocks.end(), got->begin(), got->end());
    }
    for (size_t i = 0; i < ch.tokens.size(); ++i) {
      const int64_t pos = s.length + static_cast<int64_t>(i);
      tokens.push_back(ch.tokens[i]);
      positions.push_back(static_cast<int32_t>(pos));
      slots.push_back(s.blocks[static_cast<size_t>(pos / bs)] * bs +
                      static_cast<int32_t>(pos % bs));
      if (all_rows) logit_rows.push_back(static_cast<int32_t>(tokens.size() - 1));
    }
    if (!all_rows) logit_rows.push_back(static_cast<int32_t>(tokens.size() - 1));
    query_start.push_back(static_cast<int32_t>(tokens.size()));
    context_lens.push_back(static_cast<int32_t>(new_len));
    max_blocks = std::max(max_blocks, s.blocks.size());
  }
  std::vector<int32_t> tables(chunks.size() * max_blocks, 0);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& blocks = seqs_.at(chunks[i].seq).blocks;
    std::copy(blocks.begin(), blocks.end(), tables.begin() + static_cast<long>(i * max_blocks));
  }
  const ForwardBatch batch{.tokens = tokens,
                           .positions = positions,
                           .slots = slots,
                           .query_start = query_start,
                           .context_lens = context_lens,
                           .block_tables = tables,
                           .max_blocks_per_seq = static_cast<int>(max_blocks),
                           .logit_rows = logit_rows};
  Tensor logits = model_.forward(batch, pool_);
  for (const auto& ch : chunks) seqs_.at(ch.seq).length += static_cast<int64_t>(ch.tokens.size());
  return logits;
}

}  // namespace tessera::model
