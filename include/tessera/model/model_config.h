// ModelConfig: the hyperparameters of a llama-family decoder, read from a GGUF file or a Hugging
// Face config.json. A plain value: whoever loads the model owns it. Validation happens here, so a
// config that leaves this module is consistent (heads divide, head_dim even, ...).
#pragma once

#include <string>

#include "tessera/ops/ops.h"

namespace tessera::model {

class GgufFile;

struct ModelConfig {
  // "llama" (Llama 2/3.x, SmolLM2, TinyLlama, Mistral, Mixtral), "qwen2", "qwen3" or "olmoe".
  std::string architecture;
  std::string name;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int max_position = 0;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  ops::RopeParams rope;
  // Mixture of experts; num_experts == 0: a dense model. Every layer's FFN is then a router over
  // num_experts experts of expert_intermediate_size (num_experts_used chosen per token), plus a
  // shared expert (with a sigmoid gate) when shared_expert_intermediate_size > 0.
  int num_experts = 0;
  int num_experts_used = 0;
  int expert_intermediate_size = 0;
  int shared_expert_intermediate_size = 0;
  bool norm_topk_prob = true;  // renormalise the chosen experts' weights to sum 1
  // RMSNorm of q and k before RoPE: per head (Qwen3: attn_q_norm / attn_k_norm of head_dim) or,
  // with qk_norm_full, over each token's whole q and k projections (OLMoE: weights of q_dim and
  // kv_dim, so a TP rank would need every head's sum of squares: TP is refused for it).
  bool qk_norm = false;
  bool qk_norm_full = false;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  bool is_moe() const { return num_experts > 0; }
  void validate() const;  // throws kInvalidArgument naming the bad field
};

// Reads `<arch>.*` keys; throws kUnsupported naming the architecture when it is not llama/qwen2.
ModelConfig config_from_gguf(const GgufFile& file);

}  // namespace tessera::model

#if TESSERA_HAVE_JSON
#include <nlohmann/json_fwd.hpp>
namespace tessera::model {
// Reads a Hugging Face config.json (model_type llama, mistral, qwen2, mixtral, qwen2_moe, qwen3,
// qwen3_moe or olmoe).
ModelConfig config_from_hf(const nlohmann::json& config);
}  // namespace tessera::model
#endif
