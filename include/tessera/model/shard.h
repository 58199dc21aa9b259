// Sharding of a llama-family model across a T x P worker group (Megatron-style tensor parallelism
// inside a stage, contiguous layer ranges across pipeline stages). ShardSpec says which part a
// rank holds; the functions here cut that part out of the full weights. Rows of a [out, in]
// weight are cut as views (they borrow the mapped file, so only the shard's pages are ever read);
// columns are copied out row by row and the source pages handed back to the kernel, so a rank's
// resident memory stays near weights / T.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/core/tensor.h"
#include "tessera/model/model_config.h"
#include "tessera/model/weights.h"

namespace tessera::model {

struct ShardSpec {
  int tp_rank = 0;
  int tp_size = 1;
  int first_layer = 0;
  int num_layers = -1;  // layers of this stage; -1: from first_layer to the end
  int stage = 0;        // for messages
  int num_stages = 1;
  // Expert parallelism (MoE models): each of the E rank groups of a stage runs only its
  // contiguous range of the experts (expert_range); with replicated attention every group runs
  // attention for every token and the partial FFN outputs are summed with an all-reduce over the
  // "ep" communicator. Under tensor parallelism (alone or inside each EP group) every TP rank
  // routes the same tokens and holds a 1/T slice of every held expert's width (and of the
  // shared expert's), and the TP all-reduce sums the slices.
  int ep_rank = 0;
  int ep_size = 1;
  // Expert parallelism with data-parallel attention instead: each EP rank gets only its own
  // sequences' tokens (the plan's attention_rank per chunk; the worker filters the plan),
  // holds the shared expert too, and MoE layers exchange tokens by all_to_all_v
  // (MoeLayer::forward_dispatch). A rank with no tokens in a step still serves the others.
  bool ep_data_attention = false;
  // Tensor parallelism, dense models: cut each step's rows in two micro-batches (where
  // ops::exact_row_split allows) so that one half's all-reduce runs while the other half
  // computes. Bitwise the same results either way (llama_overlap.cpp says why).
  bool tp_overlap = false;
  // Tensor parallelism: sequence parallelism of the residual stream. Each TP rank keeps only its
  // 1/T of the step's rows of the residual; a layer half's partial output is reduce-scattered
  // (not all-reduced) onto those rows, added and normed there, and the normed rows all-gathered
  // for the next projections: the same bits as the all-reduce form, each rank adding and norming
  // 1/T of the rows, and on the engines that exchange directly (gloo, shm) 2(T-1)/T of a buffer
  // sent per layer half instead of T-1 (the same at T = 2, one more message round). Not with
  // tp_overlap (which wins where both apply).
  bool sequence_parallel = false;

  bool first_stage() const { return first_layer == 0; }
};

// What one TP rank holds of the attention and MLP, from the full config and the spec.
struct TpLayout {
  int heads = 0;          // query heads on this rank (num_heads / T)
  int kv_heads = 0;       // KV heads on this rank (num_kv_heads / T, or 1 when replicated)
  int first_head = 0;     // first query head
  int first_kv_head = 0;  // first KV head (shared by several ranks when T > num_kv_heads)
  int64_t ffn = 0;        // intermediate columns on this rank
  int64_t first_ffn = 0;
  int64_t vocab_per_rank = 0;  // ceil(vocab / T): the padded vocabulary shard
  int64_t first_vocab = 0;
  int64_t vocab = 0;  // real rows on this rank (the last shard may be short)
};

// Throws kInvalidArgument naming the constraint (T must divide the heads and the intermediate
// size; KV heads must divide among or be replicated across the T ranks).
TpLayout tp_layout(const ModelConfig& c, int tp_rank, int tp_size);
// The experts EP rank `ep_rank` of `ep_size` holds: num_experts / ep_size contiguous experts.
// Throws kInvalidArgument when ep_size does not divide num_experts.
std::pair<int, int> expert_range(int num_experts, int ep_rank, int ep_size);
// Rank r's layers when `num_layers` are split into per-stage counts `split` (empty: as even as
// possible, earlier stages taking the remainder). Returns {first_layer, count} per stage.
std::vector<std::pair<int, int>> stage_ranges(int num_layers, int num_stages,
                                              const std::vector<int>& split);

// Per-stage layer counts that balance the bytes each stage reads per decode step: a layer costs
// its weights, and the last stage also reads the LM head (as large as 15 of SmolLM2's layers), so
// an even split of the layers leaves the last stage the slowest. Minimises the largest stage.
std::vector<int> balanced_split(const WeightSource& w, int num_stages);

// Rows [begin, end) of a [rows, cols] weight: a view of the same storage.
Tensor shard_rows(const Tensor& w, int64_t begin, int64_t end);
// Columns [begin, end) of a [rows, cols] weight, copied into owned memory. For block-quantized
// types begin and end must fall on block boundaries (kUnsupported names the weight otherwise).
// The source pages are released afterwards when `w` borrows a mapping (madvise DONTNEED).
Tensor shard_cols(const Tensor& w, int64_t begin, int64_t end, const std::string& name);
// The same for stacked expert weights [E, R, C] (tensor parallelism inside every expert): rows
// [begin, end) of each expert's matrix, copied to [E, end - begin, C]; columns [begin, end) of
// each, copied to [E, R, end - begin] (block boundaries as for shard_cols).
Tensor shard_expert_rows(const Tensor& w, int64_t begin, int64_t end, const std::string& name);
Tensor shard_expert_cols(const Tensor& w, int64_t begin, int64_t end, const std::string& name);
// Bytes of this process's resident memory (VmRSS), for the per-rank memory report.
size_t resident_bytes();

}  // namespace tessera::model
