#include "tessera/model/step_batch.h"

#include <algorithm>

#include "tessera/core/error.h"

namespace tessera::model {

void StepBatch::add(uint64_t seq_id, std::span<const int32_t> tokens, int64_t start_pos,
                    std::span<const int32_t> block_table, Logits logits) {
  if (tokens.empty()) fail(ErrorCode::kInvalidArgument, "empty chunk for sequence ", seq_id);
  const int64_t end = start_pos + static_cast<int64_t>(tokens.size());
  if (start_pos < 0 || end > INT32_MAX)
    fail(ErrorCode::kOutOfRange, "sequence ", seq_id, ": positions [", start_pos, ", ", end,
         ") out of range");
  const int64_t blocks = (end + block_size_ - 1) / block_size_;
  if (static_cast<int64_t>(block_table.size()) < blocks)
    fail(ErrorCode::kInvalidArgument, "sequence ", seq_id, " has ", block_table.size(),
         " blocks for ", end, " tokens");
  for (int64_t b = start_pos / block_size_; b < blocks; ++b)
    if (block_table[static_cast<size_t>(b)] < 0 ||
        block_table[static_cast<size_t>(b)] >= num_blocks_)
      fail(ErrorCode::kOutOfRange, "sequence ", seq_id, ": block ",
           block_table[static_cast<size_t>(b)], " outside the KV pool of ", num_blocks_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto pos = static_cast<int32_t>(start_pos + static_cast<int64_t>(i));
    tokens_.push_back(tokens[i]);
    positions_.push_back(pos);
    slots_.push_back(block_table[static_cast<size_t>(pos / block_size_)] * block_size_ +
                     pos % block_size_);
    if (logits == Logits::kAll) logit_rows_.push_back(static_cast<int32_t>(tokens_.size() - 1));
  }
  if (logits == Logits::kLast) logit_rows_.push_back(static_cast<int32_t>(tokens_.size() - 1));
  query_start_.push_back(static_cast<int32_t>(tokens_.size()));
  context_lens_.push_back(static_cast<int32_t>(end));
  tables_.emplace_back(block_table.begin(), block_table.begin() + blocks);
}

ForwardBatch StepBatch::batch() {
  size_t max_blocks = 0;
  for (const auto& t : tables_) max_blocks = std::max(max_blocks, t.size());
  flat_tables_.assign(tables_.size() * max_blocks, 0);
  for (size_t i = 0; i < tables_.size(); ++i)
    std::copy(tables_[i].begin(), tables_[i].end(),
              flat_tables_.begin() + static_cast<std::ptrdiff_t>(i * max_blocks));
  return {.tokens = tokens_,
          .positions = positions_,
          .slots = slots_,
          .query_start = query_start_,
          .context_lens = context_lens_,
          .block_tables = flat_tables_,
          .max_blocks_per_seq = static_cast<int>(max_blocks),
          .logit_rows = logit_rows_};
}

}  // namespace tessera::model
