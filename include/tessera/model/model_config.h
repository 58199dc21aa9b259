// ModelConfig: the hyperparameters of a llama-family decoder, read from a GGUF file or a Hugging
// Face config.json. A plain value: whoever loads the model owns it. Validation happens here, so a
// config that leaves this module is consistent (heads divide, head_dim even, ...).
#pragma once

#include <string>

#include "tessera/ops/ops.h"

namespace tessera::model {

class GgufFile;

struct ModelConfig {
  std::string architecture;  // "llama" (Llama 2/3.x, SmolLM2, TinyLlama, Mistral) or "qwen2"
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

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  void validate() const;  // throws kInvalidArgument naming the bad field
};

// Reads `<arch>.*` keys; throws kUnsupported naming the architecture when it is not llama/qwen2.
ModelConfig config_from_gguf(const GgufFile& file);

}  // namespace tessera::model

#if TESSERA_HAVE_JSON
#include <nlohmann/json_fwd.hpp>
namespace tessera::model {
// Reads a Hugging Face config.json (model_type llama, mistral or qwen2).
ModelConfig config_from_hf(const nlohmann::json& config);
}  // namespace tessera::model
#endif
