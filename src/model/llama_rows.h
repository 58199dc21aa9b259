// Private to src/model: a step's index arrays packed for the device (StepMeta, pack_step) and
// LlamaModel::Rows, the metadata and activation buffers of one micro-batch of a step (the whole
// step, or one half of it under tp_overlap). Each Rows owns its activations; `hidden` is a view
// of the step's residual stream, so the halves write their rows in place.
#pragma once

#include <memory>

#include "tessera/model/llama.h"
#include "tessera/ops/ops.h"

namespace tessera::model {

namespace detail {

// A step's index arrays, packed into one I32 buffer uploaded once; each field a view of it.
struct StepMeta {
  Tensor tokens, positions, slots, query_start, context_lens, block_tables, logit_rows;
};
StepMeta pack_step(const ForwardBatch& b, const std::shared_ptr<Allocator>& alloc);
// The views of `packed` (I32, pack_step's layout, at least as long as b's arrays together) that
// hold b's arrays.
StepMeta step_views(const Tensor& packed, const ForwardBatch& b);

}  // namespace detail

struct LlamaModel::Rows {
  Tensor hidden;  // [rows, hidden]: a view of the step's residual stream
  Tensor positions, slots;
  ops::AttentionBatch attn;
  Tensor normed, q, k, v, attn_out, proj, gate, up;
  // No TP all-reduce between the output projections and the residual add (one rank): they add
  // into `hidden` themselves (ops::matmul_add, the add in a GPU GEMV's epilogue) and m.proj is
  // only their scratch.
  bool fused_residual = false;
  // Sequence parallelism: m.normed already holds the layer half's normed input (gathered from
  // the ranks' shards), so the projections read it instead of norming m.hidden.
  bool prenormed = false;
};

}  // namespace tessera::model
