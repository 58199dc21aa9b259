// ModelSpec for the planner: a model's config and where its weight bytes live, read from a GGUF
// file's tensor table, a Hugging Face directory's safetensors headers, or a bare config.json's
// parameter count. Only headers are read; tensor data is never touched.
#include <filesystem>
#include <fstream>
#include <string_view>

#include "tessera/core/error.h"
#include "tessera/model/gguf.h"
#include "tessera/planner/planner.h"

#if TESSERA_HAVE_JSON
#include <nlohmann/json.hpp>

#include "tessera/model/hf_dir.h"
#endif

namespace tessera::planner {
namespace {

namespace fs = std::filesystem;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Which bucket a layer tensor goes to, from the part of its name after the layer index.
enum class Bucket { kQo, kKv, kMlp, kExperts, kReplicated };

// Routers (ffn_gate_inp, ffn_gate_inp_shexp) fall through to kReplicated: every rank routes.
Bucket gguf_bucket(std::string_view rest) {
  if (starts_with(rest, "attn_q.") || starts_with(rest, "attn_output.")) return Bucket::kQo;
  if (starts_with(rest, "attn_k.") || starts_with(rest, "attn_v.")) return Bucket::kKv;
  if (starts_with(rest, "ffn_gate.") || starts_with(rest, "ffn_up.") ||
      starts_with(rest, "ffn_down.") || starts_with(rest, "ffn_gate_shexp.") ||
      starts_with(rest, "ffn_up_shexp.") || starts_with(rest, "ffn_down_shexp."))
    return Bucket::kMlp;
  if (starts_with(rest, "ffn_gate_exps.") || starts_with(rest, "ffn_up_exps.") ||
      starts_with(rest, "ffn_down_exps."))
    return Bucket::kExperts;
  return Bucket::kReplicated;
}

Bucket hf_bucket(std::string_view rest) {
  if (starts_with(rest, "self_attn.q_proj.") || starts_with(rest, "self_attn.o_proj."))
    return Bucket::kQo;
  if (starts_with(rest, "self_attn.k_proj.") || starts_with(rest, "self_attn.v_proj."))
    return Bucket::kKv;
  if (starts_with(rest, "mlp.gate_proj.") || starts_with(rest, "mlp.up_proj.") ||
      starts_with(rest, "mlp.down_proj.") || starts_with(rest, "mlp.shared_expert."))
    return Bucket::kMlp;
  // Qwen2/3-MoE "mlp.experts.N.*", Mixtral "block_sparse_moe.experts.N.*"; the routers
  // (mlp.gate, block_sparse_moe.gate, mlp.shared_expert_gate) stay replicated.
  if (starts_with(rest, "mlp.experts.") || starts_with(rest, "block_sparse_moe.experts."))
    return Bucket::kExperts;
  return Bucket::kReplicated;
}

void add(LayerWeights& l, Bucket b, uint64_t bytes) {
  switch (b) {
    case Bucket::kQo:
      l.attn_qo += bytes;
      break;
    case Bucket::kKv:
      l.attn_kv += bytes;
      break;
    case Bucket::kMlp:
      l.mlp += bytes;
      break;
    case Bucket::kExperts:
      l.experts += bytes;
      break;
    case Bucket::kReplicated:
      l.replicated += bytes;
      break;
  }
}

// "<prefix><N>.<rest>" -> (N, rest) when the name is a layer tensor.
std::optional<std::pair<int, std::string_view>> split_layer(std::string_view name,
                                                            std::string_view prefix) {
  if (!starts_with(name, prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos) return std::nullopt;
  int n = 0;
  for (char ch : name.substr(0, dot)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    n = n * 10 + (ch - '0');
  }
  return std::pair{n, name.substr(dot + 1)};
}

// Files a tensor under its layer, or under the non-layer totals. Layers beyond num_layers (e.g.
// extra prediction heads) are counted with the final stage's tensors.
template <typename BucketFn>
void file_tensor(WeightInventory& w, std::string_view name, uint64_t bytes, std::string_view prefix,
                 BucketFn bucket, std::string_view embd, std::string_view head) {
  if (auto layer = split_layer(name, prefix)) {
    if (layer->first < static_cast<int>(w.layers.size())) {
      add(w.layers[layer->first], bucket(layer->second), bytes);
      return;
    }
  } else if (name == embd) {
    w.embedding += bytes;
    return;
  } else if (name == head) {
    w.lm_head += bytes;
    return;
  }
  w.final_other += bytes;
}

ModelSpec spec_from_gguf(const std::string& path) {
  const model::GgufFile f = model::GgufFile::open(path);
  ModelSpec m{
      .config = model::config_from_gguf(f), .source = path, .weights_from = "GGUF tensor sizes"};
  m.weights.layers.resize(m.config.num_layers);
  for (const model::GgufTensorInfo& t : f.tensors())
    file_tensor(m.weights, t.name, t.nbytes, "blk.", gguf_bucket, "token_embd.weight",
                "output.weight");
  return m;
}

bool is_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

#if TESSERA_HAVE_JSON
nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorCode::kNotFound, "cannot read ", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorruptFile, path, " is not valid JSON: ", e.what());
  }
}

ModelSpec spec_from_config(const std::string& path, const std::string& dtype) {
  const int bits = dtype_bits(dtype);
  ModelSpec m{.config = model::config_from_hf(read_json(path)),
              .source = path,
              .weights_from = "parameter count at " + dtype};
  m.weights = inventory_from_config(m.config, bits);
  return m;
}

ModelSpec spec_from_hf_dir(const std::string& dir, const std::string& dtype) {
  const bool has_weights = fs::exists(fs::path(dir) / "model.safetensors") ||
                           fs::exists(fs::path(dir) / "model.safetensors.index.json");
  // A directory holding only config.json (weights not downloaded yet) is still worth planning.
  if (!has_weights) {
    ModelSpec m = spec_from_config((fs::path(dir) / "config.json").string(), dtype);
    m.source = dir;
    return m;
  }
  const model::HfDirectory d = model::HfDirectory::open(dir);
  ModelSpec m{.config = model::config_from_hf(d.config()),
              .source = dir,
              .weights_from = "safetensors sizes"};
  m.weights.layers.resize(m.config.num_layers);
  for (const model::SafetensorsFile& shard : d.shards())
    for (const model::SafetensorsTensorInfo& t : shard.tensors())
      file_tensor(m.weights, t.name, t.end - t.begin, "model.layers.", hf_bucket,
                  "model.embed_tokens.weight", "lm_head.weight");
  return m;
}
#endif

}  // namespace

uint64_t WeightInventory::total() const {
  uint64_t t = embedding + lm_head + final_other;
  for (const LayerWeights& l : layers) t += l.total();
  return t;
}

int dtype_bits(const std::string& name) {
  if (name == "bf16" || name == "f16" || name == "fp16") return 16;
  if (name == "f32" || name == "fp32") return 32;
  if (name == "int8" || name == "fp8" || name == "q8") return 8;
  if (name == "int4" || name == "q4") return 4;
  fail(ErrorCode::kInvalidArgument, "unknown dtype '", name,
       "' (valid: bf16, f16, f32, int8, fp8, int4)");
}

WeightInventory inventory_from_config(const model::ModelConfig& c, int bits) {
  const auto bytes = [bits](uint64_t params) { return (params * bits + 7) / 8; };
  const uint64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  LayerWeights l{
      .attn_qo = bytes(h * q + q * h + (c.qkv_bias ? q : 0)),
      .attn_kv = bytes(2 * (h * kv + (c.qkv_bias ? kv : 0))),
      .mlp = bytes(3 * h * inter),
      // input and post-attention RMSNorm weights, and Qwen3's per-head q and k norms
      .replicated = bytes(2 * h + (c.qk_norm ? 2 * uint64_t(c.head_dim) : 0)),
  };
  if (c.is_moe()) {
    // The FFN is a router (hidden x experts) over experts of gate, up and down, plus a shared
    // expert with its one-row sigmoid gate where the config has one.
    const uint64_t shared = c.shared_expert_intermediate_size;
    l.mlp = bytes(3 * h * shared);
    l.experts = bytes(uint64_t(c.num_experts) * 3 * h * c.expert_intermediate_size);
    l.replicated += bytes(h * c.num_experts + (shared ? h : 0));
  }
  WeightInventory w;
  w.layers.assign(c.num_layers, l);
  w.embedding = bytes(uint64_t(c.vocab_size) * h);
  w.lm_head = c.tied_embeddings ? 0 : w.embedding;
  w.final_other = bytes(h);
  return w;
}

uint64_t parameter_count(const model::ModelConfig& c) {
  // At 8 bits a byte is a parameter.
  return inventory_from_config(c, 8).total();
}

ModelSpec load_model_spec(const std::string& path, const std::string& dtype) {
  if (!fs::exists(path)) fail(ErrorCode::kNotFound, "no such file or directory: ", path);
  dtype_bits(dtype);  // reject a bad --dtype even when the file's own sizes are used
  if (fs::is_directory(path)) {
#if TESSERA_HAVE_JSON
    if (fs::exists(fs::path(path) / "config.json")) return spec_from_hf_dir(path, dtype);
#endif
    fail(ErrorCode::kNotFound, path, " is a directory without config.json");
  }
  if (is_gguf(path)) return spec_from_gguf(path);
#if TESSERA_HAVE_JSON
  return spec_from_config(path, dtype);
#else
  fail(ErrorCode::kUnsupported, path, " is not a GGUF file (config.json needs the JSON build)");
#endif
}

}  // namespace tessera::planner
