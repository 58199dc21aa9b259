// The Mixture-of-Experts FFN of one decoder layer (Mixtral, Qwen2-MoE): a router picks
// num_experts_used of num_experts experts per token (ops::moe_route), the held experts run grouped
// by expert (ops::moe_experts over the stacked [E, F, H] / [E, H, F] weights, kept quantized), and
// Qwen2-MoE adds a shared expert scaled by a sigmoid gate (the same two ops with one expert).
// Routing and expert compute are separate calls, and a layer holds a contiguous range of experts
// (ExpertRange), so expert parallelism can later route on every rank, exchange tokens, and run
// only its own range. Expert parallelism (shard.h) holds a range per EP rank and either sums the
// ranks' partial outputs (replicated attention: forward + an all-reduce) or exchanges tokens
// (data-parallel attention: forward_dispatch, all_to_all_v there and back).
#pragma once

#include <memory>
#include <span>

#include "tessera/core/tensor.h"
#include "tessera/model/model_config.h"
#include "tessera/model/weights.h"

namespace tessera::comm {
class Communicator;
}

namespace tessera::model {

struct ExpertRange {
  int first = 0;
  int count = 0;  // experts [first, first + count) of the layer
};

struct MoeLayer {
  ExpertRange held;
  Tensor router;                                        // ffn_gate_inp [E, H] (all experts)
  Tensor gate_exps, up_exps, down_exps;                 // [held, F, H], [held, F, H], [held, H, F]
  Tensor shexp_gate, gate_shexp, up_shexp, down_shexp;  // shared expert: [1, H], [1, Fs, H] ...

  // Reads layer `layer`'s MoE weights (names as in GGUF: blk.N.ffn_gate_inp.weight, ...).
  // `shared`: load the shared expert (Qwen2-MoE); under expert parallelism only EP rank 0 does,
  // so the all-reduce of the partial outputs counts it once. Tensor-parallel rank `tp_rank` of
  // `tp_size` holds the slice [r F / T, (r + 1) F / T) of every expert's (and the shared
  // expert's) intermediate dimension; its output is then a partial sum for the TP all-reduce.
  static MoeLayer load(const WeightSource& w, const ModelConfig& c, int layer, ExpertRange held,
                       bool shared = true, int tp_rank = 0, int tp_size = 1);
  // Every tensor, for uploads and byte counts.
  template <typename F>
  void each(F&& f) {
    for (Tensor* t : {&router, &gate_exps, &up_exps, &down_exps, &shexp_gate, &gate_shexp,
                      &up_shexp, &down_shexp})
      f(*t);
  }
  template <typename F>
  void each(F&& f) const {
    for (const Tensor* t : {&router, &gate_exps, &up_exps, &down_exps, &shexp_gate, &gate_shexp,
                            &up_shexp, &down_shexp})
      f(*t);
  }
  // out [T, H] = the layer's MoE FFN of normed [T, H]; activations from `alloc`. `counts`
  // (num_experts entries, or empty) gains each held expert's routed tokens (the ids are copied
  // to the host for it).
  void forward(const ModelConfig& c, const Tensor& normed, Tensor& out,
               const std::shared_ptr<Allocator>& alloc, std::span<int64_t> counts = {}) const;
  // The same FFN when each of the `ep` ranks holds different tokens (data-parallel attention):
  // this rank's normed [T, H] rows (T may be 0: the rank still takes part, serving the others'
  // tokens) are routed here, each row sent once to every rank holding one of its k experts
  // (expert e on rank e / (num_experts / E)), run there, and the partial outputs sent back and
  // summed in rank order, plus the shared expert, which every rank then holds. A collective over
  // `ep`: every rank calls it once per MoE layer. `counts` gains the tokens this rank's held
  // experts received from every rank.
  void forward_dispatch(const ModelConfig& c, const Tensor& normed, Tensor& out,
                        comm::Communicator& ep, const std::shared_ptr<Allocator>& alloc,
                        std::span<int64_t> counts = {}) const;

 private:
  // out += the shared expert's output (Qwen2-MoE), when this layer holds one.
  void add_shared(const ModelConfig& c, const Tensor& normed, Tensor& out,
                  const std::shared_ptr<Allocator>& alloc) const;
};

}  // namespace tessera::model
