// The sequence-parallel tensor-parallel layer loop (ShardSpec::sequence_parallel): the residual
// stream is cut by rows among the TP ranks. With the step's T rows padded to Tp = B x size (B =
// ceil(T / size)), rank r holds rows [rB, (r+1)B) of the residual, and every layer half runs
//
//   all-gather(normed rows) -> projections, attention / MLP on all T rows -> partial output
//   -> reduce-scatter onto the rank's B rows -> residual add -> next norm on those B rows
//
// instead of all-reduce -> add -> norm on every row of every rank. The first stage embeds its
// vocabulary shard and reduce-scatters it (each row has one contributor); at the end the
// residual rows are all-gathered for the LM head or the next stage.
//
// Bitwise the same results as the plain loop (forward): reduce_scatter_sum sums each element in
// rank order from 0.0f, exactly as all_reduce_sum does (communicator.h); the add and the RMS norm
// compute each row from that row alone; and the projections run on the same T rows of the same
// normed values (the gathered buffer's first T rows), so they see what the plain loop's do.
//
// The padding rows [T, Tp) of the partial-output buffer are zero-filled at allocation and never
// written (every op writes rows [0, T) only), so the padding rows of the residual stay zero, and
// their norm is zero too (0 x 1/sqrt(eps)).
//
// Bytes: the ring algorithm (NCCL, the planner) sends the same for an all-reduce as for a
// reduce-scatter plus an all-gather; the engines that exchange buffers directly (gloo, shm) send
// T - 1 buffers per all-reduce against 2(T - 1)/T here (the same at T = 2, half at T = 4), for
// one more message round per layer half.
#include <algorithm>

#include "llama_rows.h"
#include "tessera/core/error.h"

namespace tessera::model {

void LlamaModel::layers_sequence_parallel(const ForwardBatch& b, const detail::StepMeta& meta,
                                          Tensor& hidden, kv_cache::KvPool& kv,
                                          const ops::AttentionParams& ap) const {
  const auto& c = config_;
  const int64_t T = hidden.dim(0), H = c.hidden_size, size = shard_.tp_size;
  const int64_t B = (T + size - 1) / size, first = std::min(T, shard_.tp_rank * B),
                last = std::min(T, first + B);
  Tensor gathered = act({B * size, H});  // every rank's normed rows; at the end, the residual
  Tensor partial = act({B * size, H});   // a layer half's partial output; rows [T, Tp) stay 0
  Tensor residual = act({B, H}), summed = act({B, H}), normed = act({B, H});  // this rank's rows

  if (shard_.first_stage()) {
    Tensor rows = partial.slice(0, T);
    ops::embedding_shard(token_embd_, meta.tokens, tp_.first_vocab, rows);
    comm_->reduce_scatter_sum(partial, residual);
  } else if (last > first) {
    Tensor mine = residual.slice(0, last - first);
    copy(mine, hidden.slice(first, last));
  }
  auto norm_gather = [&](const Tensor& weight) {
    ops::rms_norm(residual, weight, c.rms_eps, normed);
    comm_->all_gather(normed, gathered);
  };
  auto scatter_add = [&] {
    comm_->reduce_scatter_sum(partial, summed);
    ops::add(residual, summed);
  };

  Rows m{.hidden = hidden,  // not read: the projections take m.normed, the residual is ours
         .positions = meta.positions,
         .slots = meta.slots,
         .attn = {.query_start = meta.query_start,
                  .context_lens = meta.context_lens,
                  .block_tables = meta.block_tables,
                  .max_blocks_per_seq = b.max_blocks_per_seq},
         .prenormed = true};
  alloc_rows(m, T);
  m.normed = gathered.slice(0, T);
  m.proj = partial.slice(0, T);
  if (shard_.num_layers > 0) norm_gather(layers_.front().attn_norm);
  for (int l = 0; l < shard_.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    attention_rows(L, l, m, kv, ap);
    scatter_add();
    norm_gather(L.ffn_norm);
    if (c.is_moe())
      moe_rows(L, l, m, b.expert_tokens);
    else
      mlp_rows(L, m);
    scatter_add();
    if (l + 1 < shard_.num_layers) norm_gather(layers_[static_cast<size_t>(l) + 1].attn_norm);
  }
  comm_->all_gather(residual, gathered);
  copy(hidden, gathered.slice(0, T));
}

}  // namespace tessera::model
