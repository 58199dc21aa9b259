// WeightSource over a Hugging Face directory: maps GGUF canonical names to HF parameter names.
// MoE checkpoints (mixtral, qwen2_moe) store one tensor per expert; the GGUF-style stacked
// blk.N.ffn_{gate,up,down}_exps.weight [E, rows, cols] is assembled from them (a copy).
#include <cstring>
#include <filesystem>

#include "tessera/core/error.h"
#include "tessera/model/weights.h"

#if TESSERA_HAVE_JSON
#include "tessera/model/hf_dir.h"
#endif

namespace tessera::model {

#if TESSERA_HAVE_JSON
namespace {

// "blk.3.ffn_gate_inp.weight" -> {"3", "ffn_gate_inp.weight"}; empty for non-layer names.
std::pair<std::string, std::string> split_layer(const std::string& gguf) {
  if (gguf.rfind("blk.", 0) != 0) return {};
  const size_t dot = gguf.find('.', 4);
  if (dot == std::string::npos) return {};
  return {gguf.substr(4, dot - 4), gguf.substr(dot + 1)};
}

// The MoE names of a mixtral or qwen2_moe checkpoint; `expert` fills the per-expert names.
std::string hf_moe_name(const std::string& type, const std::string& layer, const std::string& rest,
                        int expert) {
  const std::string p = "model.layers." + layer + ".";
  const std::string e = std::to_string(expert);
  if (type == "mixtral") {
    const std::string x = p + "block_sparse_moe.experts." + e + ".";
    if (rest == "ffn_gate_inp.weight") return p + "block_sparse_moe.gate.weight";
    if (rest == "ffn_gate_exps.weight") return x + "w1.weight";
    if (rest == "ffn_down_exps.weight") return x + "w2.weight";
    if (rest == "ffn_up_exps.weight") return x + "w3.weight";
  } else if (type == "qwen2_moe" || type == "qwen3_moe" || type == "olmoe") {
    const std::string x = p + "mlp.experts." + e + ".";
    if (rest == "ffn_gate_inp.weight") return p + "mlp.gate.weight";
    if (rest == "ffn_gate_exps.weight") return x + "gate_proj.weight";
    if (rest == "ffn_up_exps.weight") return x + "up_proj.weight";
    if (rest == "ffn_down_exps.weight") return x + "down_proj.weight";
    if (rest == "ffn_gate_inp_shexp.weight") return p + "mlp.shared_expert_gate.weight";
    if (rest == "ffn_gate_shexp.weight") return p + "mlp.shared_expert.gate_proj.weight";
    if (rest == "ffn_up_shexp.weight") return p + "mlp.shared_expert.up_proj.weight";
    if (rest == "ffn_down_shexp.weight") return p + "mlp.shared_expert.down_proj.weight";
  }
  return {};
}

bool is_stacked(const std::string& rest) {
  return rest == "ffn_gate_exps.weight" || rest == "ffn_up_exps.weight" ||
         rest == "ffn_down_exps.weight";
}

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"
std::string hf_name(const std::string& gguf) {
  if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf == "output_norm.weight") return "model.norm.weight";
  if (gguf == "output.weight") return "lm_head.weight";
  if (gguf.rfind("blk.", 0) != 0) return gguf;
  const size_t dot = gguf.find('.', 4);
  const std::string layer = gguf.substr(4, dot - 4);
  const std::string rest = gguf.substr(dot + 1);
  static const std::pair<const char*, const char*> kMap[] = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const auto& [g, h] : kMap)
    if (rest == g) return "model.layers." + layer + "." + h;
  return gguf;
}

class HfWeights final : public WeightSource {
 public:
  explicit HfWeights(HfDirectory dir)
      : dir_(std::move(dir)), config_(config_from_hf(dir_.config())) {
    if (!dir_.has("lm_head.weight")) config_.tied_embeddings = true;
    if (config_.is_moe()) type_ = dir_.config().value("model_type", std::string());
  }
  const ModelConfig& config() const override { return config_; }
  bool has(const std::string& name) const override { return dir_.has(resolve(name)); }
  Tensor get(const std::string& name) const override {
    const auto [layer, rest] = split_layer(name);
    if (!type_.empty() && is_stacked(rest)) return stack(name, layer, rest);
    const std::string hf = resolve(name);
    if (!dir_.has(hf))
      fail(ErrorCode::kNotFound, "weight ", hf, " (", name, ") not in ", dir_.path());
    return dir_.tensor(hf);
  }
  std::string describe() const override { return dir_.path() + " (Hugging Face safetensors)"; }

 private:
  // The HF name of a GGUF name (a stacked expert tensor: expert 0's).
  std::string resolve(const std::string& name) const {
    if (!type_.empty()) {
      const auto [layer, rest] = split_layer(name);
      std::string moe = hf_moe_name(type_, layer, rest, 0);
      if (!moe.empty()) return moe;
    }
    return hf_name(name);
  }
  // [E, rows, cols] from the E per-expert [rows, cols] tensors, which must agree.
  Tensor stack(const std::string& name, const std::string& layer, const std::string& rest) const {
    const int E = config_.num_experts;
    Tensor out;
    for (int e = 0; e < E; ++e) {
      const std::string hf = hf_moe_name(type_, layer, rest, e);
      if (!dir_.has(hf))
        fail(ErrorCode::kNotFound, "weight ", hf, " (expert ", e, " of ", name, ") not in ",
             dir_.path());
      const Tensor t = dir_.tensor(hf);
      if (e == 0) out = Tensor::empty({E, t.dim(0), t.dim(-1)}, t.dtype());
      if (t.ndim() != 2 || t.dtype() != out.dtype() || t.dim(0) != out.dim(1) ||
          t.dim(1) != out.dim(2))
        fail(ErrorCode::kInvalidArgument, "weight ", hf, " is ", t.str(), ", expert 0 has [",
             out.dim(1), ", ", out.dim(2), "] ", dtype_name(out.dtype()));
      std::memcpy(static_cast<uint8_t*>(out.data()) + static_cast<size_t>(e) * t.nbytes(), t.data(),
                  t.nbytes());
    }
    return out;
  }

  std::string type_;  // model_type of an MoE checkpoint (names of its expert weights)
  HfDirectory dir_;
  ModelConfig config_;
};

}  // namespace

std::unique_ptr<WeightSource> open_hf_weights(const std::string& dir) {
  return std::make_unique<HfWeights>(HfDirectory::open(dir));
}
#else
std::unique_ptr<WeightSource> open_hf_weights(const std::string& dir) {
  fail(ErrorCode::kUnsupported, "reading ", dir, " needs the JSON build (nlohmann_json)");
}
#endif

std::unique_ptr<WeightSource> open_weights(const std::string& path) {
  if (std::filesystem::is_directory(path)) return open_hf_weights(path);
  return open_gguf_weights(path);
}

}  // namespace tessera::model
