#include "tessera/model/model_config.h"

#include <cmath>

#include "tessera/core/error.h"
#include "tessera/model/gguf.h"

namespace tessera::model {

void ModelConfig::validate() const {
  auto positive = [](const char* field, int v) {
    if (v <= 0)
      fail(ErrorCode::kInvalidArgument, "model config: ", field, " must be positive, got ", v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("num_layers", num_layers);
  positive("num_heads", num_heads);
  positive("num_kv_heads", num_kv_heads);
  positive("head_dim", head_dim);
  positive("intermediate_size", intermediate_size);
  if (num_heads % num_kv_heads != 0)
    fail(ErrorCode::kInvalidArgument, "model config: num_heads ", num_heads,
         " is not a multiple of num_kv_heads ", num_kv_heads);
  if (head_dim % 2 != 0 || rope.rotary_dim % 2 != 0 || rope.rotary_dim > head_dim)
    fail(ErrorCode::kInvalidArgument, "model config: head_dim ", head_dim, " / rotary_dim ",
         rope.rotary_dim, " must be even with rotary_dim <= head_dim");
  if (is_moe() && (num_experts_used < 1 || num_experts_used > num_experts ||
                   expert_intermediate_size <= 0 || shared_expert_intermediate_size < 0))
    fail(ErrorCode::kInvalidArgument, "model config: ", num_experts_used, " of ", num_experts,
         " experts per token, expert intermediate size ", expert_intermediate_size,
         ", shared expert ", shared_expert_intermediate_size);
  if (!(rms_eps > 0.0f) || !(rope.theta > 0.0f))
    fail(ErrorCode::kInvalidArgument, "model config: rms_eps and rope theta must be positive");
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama" && arch != "qwen2" && arch != "qwen2moe" && arch != "qwen3" &&
      arch != "qwen3moe" && arch != "olmoe")
    fail(ErrorCode::kUnsupported, "architecture '", arch, "' in ", f.path(),
         " is not supported (supported: llama, qwen2, qwen2moe, qwen3, qwen3moe, olmoe)");
  // qwen2moe / qwen3moe: their dense model's attention with an MoE FFN.
  c.architecture = arch == "qwen2moe" ? "qwen2" : arch == "qwen3moe" ? "qwen3" : arch;
  const std::string a = arch + ".";
  c.name = f.get_string("general.name", "");
  c.hidden_size = static_cast<int>(f.get_int(a + "embedding_length"));
  c.num_layers = static_cast<int>(f.get_int(a + "block_count"));
  c.num_heads = static_cast<int>(f.get_int(a + "attention.head_count"));
  c.num_kv_heads = static_cast<int>(f.get_int(a + "attention.head_count_kv", c.num_heads));
  c.intermediate_size = static_cast<int>(f.get_int(a + "feed_forward_length"));
  c.max_position = static_cast<int>(f.get_int(a + "context_length", 4096));
  c.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.head_dim =
      c.num_heads
          ? static_cast<int>(f.get_int(a + "attention.key_length", c.hidden_size / c.num_heads))
          : 0;
  if (f.get_int(a + "attention.value_length", c.head_dim) != c.head_dim)
    fail(ErrorCode::kUnsupported, "key_length != value_length is not supported");
  const auto* embd = f.find_tensor("token_embd.weight");
  if (!embd) fail(ErrorCode::kNotFound, f.path(), " has no token_embd.weight");
  c.vocab_size =
      static_cast<int>(f.get_int(a + "vocab_size", embd->dims.size() > 1 ? embd->dims[1] : 0));
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  // Qwen3: RMSNorm over each head of Q and K (weights of head_dim) before RoPE.
  c.qk_norm = f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (c.qk_norm != (f.find_tensor("blk.0.attn_k_norm.weight") != nullptr))
    fail(ErrorCode::kInvalidArgument, f.path(), ": attn_q_norm and attn_k_norm come together");
  // OLMoE: over the whole q and k projections (llama.cpp's olmoe graph), not per head.
  c.qk_norm_full = c.qk_norm && arch == "olmoe";
  // MoE in llama.cpp's layout: ffn_gate_inp router, stacked ffn_*_exps experts, qwen2moe's shared
  // expert (ffn_*_shexp, gate ffn_gate_inp_shexp). The chosen experts' weights are renormalised
  // for llama (Mixtral) and qwen3moe, not for qwen2moe, as llama.cpp does, unless
  // expert_weights_norm says.
  c.num_experts = static_cast<int>(f.get_int(a + "expert_count", 0));
  if ((arch == "qwen2moe" || arch == "qwen3moe" || arch == "olmoe") && !c.is_moe())
    fail(ErrorCode::kInvalidArgument, f.path(), ": ", arch, " without ", a, "expert_count");
  if (c.is_moe()) {
    c.num_experts_used = static_cast<int>(f.get_int(a + "expert_used_count"));
    c.expert_intermediate_size =
        static_cast<int>(f.get_int(a + "expert_feed_forward_length", c.intermediate_size));
    c.shared_expert_intermediate_size =
        static_cast<int>(f.get_int(a + "expert_shared_feed_forward_length", 0));
    // llama.cpp renormalises for llama (Mixtral) and qwen3moe, not for qwen2moe and olmoe, unless
    // the file says.
    c.norm_topk_prob = f.get_bool(a + "expert_weights_norm", arch == "llama" || arch == "qwen3moe");
    if (const int64_t gating = f.get_int(a + "expert_gating_func", 1); gating != 1)
      fail(ErrorCode::kUnsupported, f.path(), ": ", a, "expert_gating_func ", gating,
           " is not supported (only 1, softmax)");
    if (!f.find_tensor("blk.0.ffn_gate_exps.weight"))
      fail(ErrorCode::kUnsupported, f.path(), ": ", a, "expert_count is ", c.num_experts,
           " but blk.0.ffn_gate_exps.weight is missing (only stacked experts are supported; ",
           "re-convert older per-expert GGUF files)");
  }

  c.rope.head_dim = c.head_dim;
  c.rope.rotary_dim = static_cast<int>(f.get_int(a + "rope.dimension_count", c.head_dim));
  c.rope.theta = static_cast<float>(f.get_float(a + "rope.freq_base", 10000.0));
  // llama.cpp's converter permutes llama Q/K rows so that rotation pairs are adjacent; qwen2 is
  // converted without that permutation and uses NeoX pairs.
  c.rope.style = c.architecture == "llama" ? ops::RopeStyle::kInterleaved : ops::RopeStyle::kNeox;
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  double factor = f.get_float(a + "rope.scaling.factor", 0.0);
  if (factor == 0.0) factor = f.get_float(a + "rope.scale_linear", 0.0);
  if (scaling == "linear" && factor > 0.0) {
    c.rope.linear_factor = static_cast<float>(factor);
  } else if (scaling != "none" && scaling != "linear" && scaling != "llama3") {
    fail(ErrorCode::kUnsupported, "rope scaling type '", scaling, "' is not supported");
  }
  // Llama 3.1+ GGUF files carry their rope scaling as per-pair divisors in rope_freqs.weight.
  if (f.find_tensor("rope_freqs.weight")) {
    const Tensor t = f.tensor("rope_freqs.weight");
    if (t.dtype() != DType::kF32 || t.numel() != c.rope.rotary_dim / 2)
      fail(ErrorCode::kInvalidArgument, "rope_freqs.weight is ", t.str(), ", expected f32[",
           c.rope.rotary_dim / 2, "]");
    const float* v = t.data_as<float>();
    c.rope.freq_factors.assign(v, v + t.numel());
  }
  c.validate();
  return c;
}

}  // namespace tessera::model
