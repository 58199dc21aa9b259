// LlamaModel: the llama-family decoder (Llama 2/3.x, SmolLM2, TinyLlama, Mistral dense, Qwen2 with
// QKV bias) as a sequence of ops over a paged KV cache. It holds views of the weights (borrowed
// from the WeightSource's mapping) and nothing per request: the caller owns the KV pool and the
// block tables, so one forward() can mix prefill chunks and decodes of many sequences.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/core/tensor.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/model_config.h"
#include "tessera/model/weights.h"

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
};

class LlamaModel {
 public:
  explicit LlamaModel(const WeightSource& weights);
  const ModelConfig& config() const { return config_; }

  // Runs all layers; returns logits [logit_rows.size(), vocab_size] F32.
  Tensor forward(const ForwardBatch& batch, kv_cache::KvPool& kv) const;
  // Bytes of weights referenced (what one decode step must read at least once).
  size_t weight_bytes() const;

 private:
  struct Layer {
    Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
  };
  ModelConfig config_;
  Tensor token_embd_, output_norm_, output_;
  std::vector<Layer> layers_;
};

}  // namespace tessera::model
