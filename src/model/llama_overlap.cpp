// The overlapped tensor-parallel layer loop (ShardSpec::tp_overlap): a step's rows are cut in two
// micro-batches A = [0, cut) and B = [cut, T), and every TP all-reduce of one is in flight on the
// communicator's progress thread while the other computes:
//
//   A attention | B attention | A MLP        | B MLP        | A attention (next layer) ...
//               | A reduce    | B reduce     | A reduce     | B reduce
//
// A sequence whose rows straddle the cut is split too: its rows in A see a context shortened by
// the rows that follow in B, and its rows in B see the full context, whose keys A appended
// earlier in the same layer (A's attention always runs before B's).
//
// Bitwise the same results as the plain loop (forward): every op but the all-reduce computes a
// row from that row alone (norms, rope, KV append, SiLU, add), or from that row and the cache
// (attention visits each query row's keys in the same chunks whatever the number of query rows),
// and matmul does so too where ops::exact_row_split cut the step; the all-reduce sums each
// element over the ranks in rank order from 0.0f (communicator.h), whatever rows travel with it.
// So each row goes through exactly the same float operations in the same order either way.
#include <vector>

#include "llama_rows.h"
#include "tessera/core/error.h"

namespace tessera::model {
namespace {

// One micro-batch's index arrays on the host, views into `b` where they can be.
struct HostPart {
  std::vector<int32_t> query_start, context_lens, block_tables;
  std::span<const int32_t> tokens, positions, slots;
};

// Rows [t0, t1) of the step as a batch of their own: the sequences they touch, the first and
// last cut to the rows inside, each context shortened by its rows after t1.
HostPart part_of(const ForwardBatch& b, int64_t t0, int64_t t1) {
  HostPart p;
  const auto S = static_cast<int64_t>(b.context_lens.size());
  const auto mb = static_cast<size_t>(b.max_blocks_per_seq);
  p.query_start.push_back(0);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q0 = b.query_start[static_cast<size_t>(s)];
    const int64_t q1 = b.query_start[static_cast<size_t>(s) + 1];
    const int64_t lo = std::max(q0, t0), hi = std::min(q1, t1);
    if (lo >= hi) continue;
    p.query_start.push_back(static_cast<int32_t>(hi - t0));
    p.context_lens.push_back(
        static_cast<int32_t>(b.context_lens[static_cast<size_t>(s)] - (q1 - hi)));
    const auto* table = b.block_tables.data() + static_cast<size_t>(s) * mb;
    p.block_tables.insert(p.block_tables.end(), table, table + mb);
  }
  const auto n = static_cast<size_t>(t1 - t0), at = static_cast<size_t>(t0);
  p.tokens = b.tokens.subspan(at, n);
  p.positions = b.positions.subspan(at, n);
  p.slots = b.slots.subspan(at, n);
  return p;
}

}  // namespace

void LlamaModel::layers_overlapped(const ForwardBatch& b, int64_t cut, Tensor& hidden,
                                   kv_cache::KvPool& kv, const ops::AttentionParams& ap) const {
  const int64_t T = hidden.dim(0);
  const HostPart host[2] = {part_of(b, 0, cut), part_of(b, cut, T)};
  std::vector<detail::StepMeta> meta;
  std::vector<Rows> rows;
  for (int h = 0; h < 2; ++h) {
    const HostPart& p = host[h];
    const ForwardBatch fb{.tokens = p.tokens,
                          .positions = p.positions,
                          .slots = p.slots,
                          .query_start = p.query_start,
                          .context_lens = p.context_lens,
                          .block_tables = p.block_tables,
                          .max_blocks_per_seq = b.max_blocks_per_seq};
    meta.push_back(detail::pack_step(fb, alloc_));
    const auto& m = meta.back();
    rows.push_back(Rows{.hidden = h == 0 ? hidden.slice(0, cut) : hidden.slice(cut, T),
                        .positions = m.positions,
                        .slots = m.slots,
                        .attn = {.query_start = m.query_start,
                                 .context_lens = m.context_lens,
                                 .block_tables = m.block_tables,
                                 .max_blocks_per_seq = b.max_blocks_per_seq}});
    alloc_rows(rows.back(), h == 0 ? cut : T - cut);
  }
  // pending[h]: micro-batch h's all-reduce of rows[h].proj, to be added to its residual rows.
  std::unique_ptr<comm::Work> pending[2];
  auto settle = [&](int h) {
    if (!pending[h]) return;
    pending[h]->wait();
    pending[h].reset();
    ops::add(rows[static_cast<size_t>(h)].hidden, rows[static_cast<size_t>(h)].proj);
  };
  for (int l = 0; l < shard_.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    for (int h = 0; h < 2; ++h) {
      settle(h);  // the previous layer's MLP output of this half, reduced meanwhile
      attention_rows(L, l, rows[static_cast<size_t>(h)], kv, ap);
      pending[h] = comm_->all_reduce_sum_async(rows[static_cast<size_t>(h)].proj);
    }
    for (int h = 0; h < 2; ++h) {
      settle(h);
      mlp_rows(L, rows[static_cast<size_t>(h)]);
      pending[h] = comm_->all_reduce_sum_async(rows[static_cast<size_t>(h)].proj);
    }
  }
  settle(0);
  settle(1);
}

}  // namespace tessera::model
