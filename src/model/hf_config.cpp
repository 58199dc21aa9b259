// ModelConfig from a Hugging Face config.json.
#if TESSERA_HAVE_JSON
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>

#include "tessera/core/error.h"
#include "tessera/json/bounded_json.h"
#include "tessera/model/model_config.h"

namespace tessera::model {
namespace {

template <typename T>
T field(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null())
    fail(ErrorCode::kInvalidArgument, "config.json lacks '", key, "'");
  try {
    const nlohmann::json& v = j[key];
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      const std::optional<T> i = tessera::json::integer_as<T>(v);
      if (!i)
        fail(ErrorCode::kInvalidArgument, "config.json: '", key, "' is ", v.dump(),
             ", not an integer in range");
      return *i;
    }
    if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number() || !(std::abs(v.get<double>()) <= double(std::numeric_limits<T>::max())))
        fail(ErrorCode::kInvalidArgument, "config.json: '", key, "' is ", v.dump(),
             ", not a number in range");
    }
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(ErrorCode::kInvalidArgument, "config.json: '", key, "' has the wrong type");
  }
}

template <typename T>
T field_or(const nlohmann::json& j, const char* key, T def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  return field<T>(j, key);
}

}  // namespace

ModelConfig config_from_hf(const nlohmann::json& j) {
  ModelConfig c;
  const std::string type = field_or<std::string>(j, "model_type", "");
  if (type == "llama" || type == "mistral") {
    c.architecture = "llama";
    c.qkv_bias = field_or<bool>(j, "attention_bias", false);
  } else if (type == "qwen2") {
    c.architecture = "qwen2";
    c.qkv_bias = true;
  } else if (type == "mixtral") {
    c.architecture = "llama";
    c.qkv_bias = false;
    c.num_experts = field<int>(j, "num_local_experts");
    c.num_experts_used = field<int>(j, "num_experts_per_tok");
    c.expert_intermediate_size = field<int>(j, "intermediate_size");
    c.norm_topk_prob = true;  // Mixtral: softmax, top-k, renormalise
  } else if (type == "qwen2_moe") {
    c.architecture = "qwen2";
    c.qkv_bias = true;
    c.num_experts = field<int>(j, "num_experts");
    c.num_experts_used = field<int>(j, "num_experts_per_tok");
    c.expert_intermediate_size = field<int>(j, "moe_intermediate_size");
    c.shared_expert_intermediate_size = field_or<int>(j, "shared_expert_intermediate_size", 0);
    c.norm_topk_prob = field_or<bool>(j, "norm_topk_prob", false);
    if (field_or<int>(j, "decoder_sparse_step", 1) != 1)
      fail(ErrorCode::kUnsupported, "qwen2_moe with decoder_sparse_step != 1 (dense layers ",
           "between MoE layers) is not supported");
    if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array() &&
        !j["mlp_only_layers"].empty())
      fail(ErrorCode::kUnsupported, "qwen2_moe with mlp_only_layers (dense layers) is not ",
           "supported");
  } else if (type == "qwen3_moe" || type == "qwen3") {
    c.architecture = "qwen3";  // qwen2's attention with a per-head q/k RMSNorm, no QKV bias
    c.qkv_bias = field_or<bool>(j, "attention_bias", false);
    c.qk_norm = true;
    if (type == "qwen3_moe") {
      c.num_experts = field<int>(j, "num_experts");
      c.num_experts_used = field<int>(j, "num_experts_per_tok");
      c.expert_intermediate_size = field<int>(j, "moe_intermediate_size");
      c.norm_topk_prob = field_or<bool>(j, "norm_topk_prob", false);
      if (field_or<int>(j, "decoder_sparse_step", 1) != 1 ||
          (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array() &&
           !j["mlp_only_layers"].empty()))
        fail(ErrorCode::kUnsupported, "qwen3_moe with dense layers between MoE layers ",
             "(decoder_sparse_step != 1 or mlp_only_layers) is not supported");
    }
  } else if (type == "olmoe") {
    // OLMoE: llama attention with an RMSNorm over each token's whole q and k, NeoX RoPE, and a
    // softmax top-k router without renormalisation (norm_topk_prob false).
    c.architecture = "olmoe";
    c.qkv_bias = field_or<bool>(j, "attention_bias", false);
    c.qk_norm = c.qk_norm_full = true;
    c.num_experts = field<int>(j, "num_experts");
    c.num_experts_used = field<int>(j, "num_experts_per_tok");
    c.expert_intermediate_size = field<int>(j, "intermediate_size");
    c.norm_topk_prob = field_or<bool>(j, "norm_topk_prob", false);
    if (j.contains("clip_qkv") && !j["clip_qkv"].is_null())
      fail(ErrorCode::kUnsupported, "olmoe with clip_qkv (clamped q/k/v) is not supported");
  } else {
    fail(ErrorCode::kUnsupported, "architecture '", type,
         "' (model_type in config.json) is not supported (supported: llama, mistral, qwen2, "
         "mixtral, qwen2_moe, qwen3, qwen3_moe, olmoe)");
  }
  c.name = field_or<std::string>(j, "_name_or_path", "");
  c.vocab_size = field<int>(j, "vocab_size");
  c.hidden_size = field<int>(j, "hidden_size");
  c.num_layers = field<int>(j, "num_hidden_layers");
  c.num_heads = field<int>(j, "num_attention_heads");
  c.num_kv_heads = field_or<int>(j, "num_key_value_heads", c.num_heads);
  c.head_dim = field_or<int>(j, "head_dim", c.num_heads ? c.hidden_size / c.num_heads : 0);
  c.intermediate_size = field_or<int>(j, "intermediate_size", c.expert_intermediate_size);
  c.max_position = field_or<int>(j, "max_position_embeddings", 4096);
  c.rms_eps = field_or<float>(j, "rms_norm_eps", 1e-6f);
  c.tied_embeddings = field_or<bool>(j, "tie_word_embeddings", false);
  c.rope.head_dim = c.head_dim;
  c.rope.rotary_dim = c.head_dim;
  c.rope.theta = field_or<float>(j, "rope_theta", 10000.0f);
  // Hugging Face checkpoints keep Q/K rows unpermuted: rotate-half (NeoX) pairs.
  c.rope.style = ops::RopeStyle::kNeox;
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const auto& rs = j["rope_scaling"];
    const std::string kind = rs.value("rope_type", rs.value("type", std::string("default")));
    if (kind == "llama3") {
      c.rope.llama3_factor = field<float>(rs, "factor");
      c.rope.llama3_low_freq_factor = field_or<float>(rs, "low_freq_factor", 1.0f);
      c.rope.llama3_high_freq_factor = field_or<float>(rs, "high_freq_factor", 4.0f);
      c.rope.llama3_original_max_position =
          field_or<int>(rs, "original_max_position_embeddings", 8192);
    } else if (kind == "linear") {
      c.rope.linear_factor = field<float>(rs, "factor");
    } else if (kind != "default") {
      fail(ErrorCode::kUnsupported, "rope_scaling type '", kind,
           "' is not supported (supported: llama3, linear)");
    }
  }
  c.validate();
  return c;
}

}  // namespace tessera::model
#endif  // TESSERA_HAVE_JSON
