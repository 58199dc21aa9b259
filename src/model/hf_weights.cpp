// WeightSource over a Hugging Face directory: maps GGUF canonical names to HF parameter names.
#include <filesystem>

#include "tessera/core/error.h"
#include "tessera/model/weights.h"

#if TESSERA_HAVE_JSON
#include "tessera/model/hf_dir.h"
#endif

namespace tessera::model {

#if TESSERA_HAVE_JSON
namespace {

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
      {"attn_q.weight", "self_attn.q_proj.weight"},   {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},   {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},    {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const auto& [g, h] : kMap)
    if (rest == g) return "model.layers." + layer + "." + h;
  return gguf;
}

class HfWeights final : public WeightSource {
 public:
  explicit HfWeights(HfDirectory dir) : dir_(std::move(dir)), config_(config_from_hf(dir_.config())) {
    if (!dir_.has("lm_head.weight")) config_.tied_embeddings = true;
  }
  const ModelConfig& config() const override { return config_; }
  bool has(const std::string& name) const override { return dir_.has(hf_name(name)); }
  Tensor get(const std::string& name) const override {
    const std::string hf = hf_name(name);
    if (!dir_.has(hf)) fail(ErrorCode::kNotFound, "weight ", hf, " (", name, ") not in ", dir_.path());
    return dir_.tensor(hf);
  }
  std::string describe() const override { return dir_.path() + " (Hugging Face safetensors)"; }

 private:
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
