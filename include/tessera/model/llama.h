// LlamaModel: the llama-family decoder (Llama 2/3.x, SmolLM2, TinyLlama, Mistral dense, Qwen2 with
// QKV bias; Mixtral and Qwen2-MoE, whose FFN is a MoeLayer) as a sequence of ops over a paged KV
// cache. It holds views of the weights (borrowed from the WeightSource's mapping) and nothing per
// request: the caller owns the KV pool and the block tables, so one forward() can mix prefill
// chunks and decodes of many sequences.
//
// One model object may be one shard of a T x P worker group (ShardSpec): Q/K/V and gate/up are
// column-parallel (rows of the weight), attention output and down row-parallel (columns), with one
// all-reduce on the TP communicator after each; embedding and LM head are vocabulary-parallel. A
// stage holds a contiguous range of layers; the first stage embeds tokens, the others take the
// previous stage's hidden states, and only the last stage produces logits. The model never
// knows which communicator engine or backend it runs on.
//
// Device: the model lives on its allocator's device. Weights are uploaded there still quantized
// (CPU: the mapped file is used in place); activations are allocated there; the step's metadata
// (token ids, positions, slots, block tables, logit rows) is packed into one I32 buffer and
// uploaded once per forward. The model touches no memory itself: gathers, copies and fills are
// ops or tessera::copy, so it runs unchanged on the CPU, the guarded device and (op by op, as the
// kernels arrive) CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tessera/comm/communicator.h"
#include "tessera/core/progress.h"
#include "tessera/core/tensor.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/model_config.h"
#include "tessera/model/moe.h"
#include "tessera/model/shard.h"
#include "tessera/model/weights.h"
#include "tessera/ops/ops.h"

namespace tessera::model {

// One step's tokens. Sequence s owns rows [query_start[s], query_start[s+1]) of tokens/positions;
// slots[i] is the KV slot (block * block_size + offset) token i is written to; logit_rows lists
// the token rows whose logits are wanted (usually each sequence's last row).
struct ForwardBatch {
  std::span<const int32_t> tokens;
  std::span<const int32_t> positions;
  std::span<const int32_t> slots;
  std::span<const int32_t> query_start;   // num_seqs + 1
  std::span<const int32_t> context_lens;  // num_seqs, tokens in cache after this step
  std::span<const int32_t> block_tables;  // num_seqs * max_blocks_per_seq
  int max_blocks_per_seq = 0;
  std::span<const int32_t> logit_rows;
  // MoE models, optional: [shard layers * num_experts] counters, incremented per layer by the
  // tokens routed to each held expert (top-k choices). Empty: not counted.
  std::span<int64_t> expert_tokens;
};

namespace detail {
struct StepMeta;  // a step's index arrays on the device (llama_rows.h)
}  // namespace detail

class LlamaModel {
 public:
  // The whole model (shard = {}), or one shard of it. `tp` (borrowed, may be null when
  // shard.tp_size == 1) must outlive the model and is used from the thread calling forward().
  // `device` is the allocator of the device to run on (null: the CPU).
  // `progress` (optional) is told the bytes of weights uploaded to the device so far, of the
  // shard's total (on the CPU the file's mapping is used in place, so it completes at once).
  explicit LlamaModel(const WeightSource& weights, const ShardSpec& shard = {},
                      comm::Communicator* tp = nullptr, std::shared_ptr<Allocator> device = nullptr,
                      comm::Communicator* ep = nullptr, const ProgressFn& progress = {});
  const ModelConfig& config() const { return config_; }  // the full model's hyperparameters
  const ShardSpec& shard() const { return shard_; }
  Device device() const { return alloc_->device(); }
  const std::shared_ptr<Allocator>& allocator() const { return alloc_; }
  const TpLayout& tp_layout() const { return tp_; }
  bool last_stage() const { return shard_.first_layer + shard_.num_layers == config_.num_layers; }
  // The KV pool this shard needs: its layers and its KV heads (num_blocks left to the caller).
  kv_cache::KvPoolParams kv_shape(int block_size) const;

  // Runs this shard's layers. The first stage reads batch.tokens; later stages read `hidden_in`
  // [tokens, hidden] (any device) from the previous stage. Returns, on the model's device, logits
  // [logit_rows.size(), vocab_size] F32 on the last stage, otherwise the hidden states
  // [tokens, hidden] to send on. Under data-parallel expert parallelism the batch holds this
  // rank's sequences only and may be empty (the rank still serves its experts).
  Tensor forward(const ForwardBatch& batch, kv_cache::KvPool& kv,
                 const Tensor* hidden_in = nullptr) const;
  // forward() of a step whose index arrays are on the device already: `meta` holds batch's arrays
  // in detail::pack_step's layout (a decode graph's persistent buffer, decode_graphs.h). Shapes
  // are checked, values are not (a graph's padding rows carry slot -1): the caller checked the
  // real rows with check_step(). Enqueues no host copy, so a device graph can record it.
  Tensor forward_packed(const ForwardBatch& batch, const detail::StepMeta& meta,
                        kv_cache::KvPool& kv, const Tensor* hidden_in = nullptr) const;
  // What forward() checks of a step before uploading it: every index value against the
  // vocabulary and the pool (device kernels cannot report a bad index). Throws naming the first.
  void check_step(const ForwardBatch& batch, const kv_cache::KvPool& kv) const;
  // Whether forward_packed may be recorded as a device graph: the whole model on one rank (one
  // stage, no TP, no experts), so a step has no collective and no host read-back.
  bool graphable() const {
    return shard_.tp_size == 1 && shard_.ep_size == 1 && shard_.first_stage() && last_stage() &&
           !config_.is_moe();
  }
  // Throws kUnsupported naming the first (op, dtype) this shard needs that its device's ops do
  // not implement, so a device without a kernel fails at start, not at the first request.
  void check_device_support() const;
  // Bytes of weights this shard references (what one decode step must read at least once).
  size_t weight_bytes() const;

 private:
  struct Layer {
    Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
    Tensor q_norm, k_norm;  // Qwen3: per-head RMSNorm weights [head_dim]; undefined otherwise
    MoeLayer moe;           // MoE models: the FFN (w_gate/w_up/w_down stay undefined)
  };
  struct Rows;  // one micro-batch of a step: its metadata and activations (llama_rows.h)
  // A layer's halves on `m`'s rows, each ending in m.proj before its TP all-reduce (or, with
  // m.fused_residual, added into m.hidden): attention (norm, QKV, rope, KV append, attention,
  // output projection) and the dense MLP.
  void attention_rows(const Layer& L, int l, Rows& m, kv_cache::KvPool& kv,
                      const ops::AttentionParams& ap) const;
  void mlp_rows(const Layer& L, Rows& m) const;
  void alloc_rows(Rows& m, int64_t rows) const;  // m's activation buffers for `rows` rows
  // tp_overlap: every layer on two micro-batches (rows [0, cut) and [cut, T) of `hidden`), each
  // one's all-reduces in flight while the other computes (llama_overlap.cpp).
  void layers_overlapped(const ForwardBatch& b, int64_t cut, Tensor& hidden, kv_cache::KvPool& kv,
                         const ops::AttentionParams& ap) const;
  // sequence_parallel: every layer with the residual stream cut by rows among the TP ranks
  // (llama_sequence_parallel.cpp); on the first stage it embeds the step's tokens itself.
  void layers_sequence_parallel(const ForwardBatch& b, const detail::StepMeta& meta, Tensor& hidden,
                                kv_cache::KvPool& kv, const ops::AttentionParams& ap) const;
  // A MoE layer's FFN on m.normed into m.proj, before the TP all-reduce (the EP sum included).
  void moe_rows(const Layer& L, int l, Rows& m, std::span<int64_t> expert_tokens) const;
  void embed(const Tensor& tokens, Tensor& hidden) const;
  bool data_parallel_ep() const { return shard_.ep_size > 1 && shard_.ep_data_attention; }
  Tensor idle_layers(std::span<int64_t> expert_tokens) const;  // forward() of no tokens
  Tensor lm_head(const Tensor& last) const;
  Tensor act(Shape shape) const { return Tensor::empty(std::move(shape), DType::kF32, alloc_); }

  ModelConfig config_;
  ShardSpec shard_;
  TpLayout tp_;
  comm::Communicator* comm_ = nullptr;
  comm::Communicator* ep_ = nullptr;  // expert parallelism: sums the ranks' MoE outputs
  std::shared_ptr<Allocator> alloc_;
  Tensor token_embd_, output_norm_, output_;  // vocabulary shards when T > 1
  std::vector<Layer> layers_;
};

}  // namespace tessera::model
