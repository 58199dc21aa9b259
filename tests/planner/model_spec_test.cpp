// Where the planner gets its bytes: a tiny GGUF with mixed quantisations (sizes by ggml type), a
// Hugging Face directory (safetensors sizes, or the parameter count when only config.json is
// there), and the default model when it is downloaded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "../model/gguf_builder.h"
#include "tessera/core/error.h"
#include "tessera/model/gguf.h"
#include "tessera/planner/planner.h"

#if TESSERA_HAVE_JSON
#include "../model/safetensors_writer.h"
#endif

namespace tessera::planner {
namespace {

namespace fs = std::filesystem;
using model::GgmlType;
using model::GgufValueType;
using model::testing::GgufBuilder;
using model::testing::TensorSpec;

// A scratch directory for files written by one test.
struct Scratch {
  fs::path dir = fs::temp_directory_path() /
                 ("tessera_planner_test_" + std::to_string(std::random_device{}()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A 3-layer llama: hidden 64, 4 heads / 2 KV heads of 16, intermediate 128, vocab 100.
// Byte sizes (ggml dims are innermost first):
//   token_embd  Q8_0 {64,100}: 2 blocks of 34 bytes per row x 100 rows   =  6,800
//   attn_q, attn_output F16 {64,64}                                       =  8,192 each
//   attn_k F16 {64,32} = 4,096;  attn_v Q8_0 {64,32}: 32 rows x 68       =  2,176
//   ffn_gate, ffn_up Q4_0 {64,128}: 2 blocks of 18 x 128 rows            =  4,608 each
//   ffn_down Q4_0 {128,64}: 4 blocks of 18 x 64 rows                      =  4,608
//   attn_norm, ffn_norm, output_norm F32 {64}                             =    256 each
//   output F16 {64,100}                                                   = 12,800
std::vector<uint8_t> tiny_gguf(bool tied, std::mt19937& rng) {
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.str("general.name", "tiny");
  g.scalar<uint32_t>("llama.embedding_length", GgufValueType::kUint32, 64);
  g.scalar<uint32_t>("llama.block_count", GgufValueType::kUint32, 3);
  g.scalar<uint32_t>("llama.attention.head_count", GgufValueType::kUint32, 4);
  g.scalar<uint32_t>("llama.attention.head_count_kv", GgufValueType::kUint32, 2);
  g.scalar<uint32_t>("llama.feed_forward_length", GgufValueType::kUint32, 128);
  g.scalar<uint32_t>("llama.context_length", GgufValueType::kUint32, 256);
  g.scalar<float>("llama.attention.layer_norm_rms_epsilon", GgufValueType::kFloat32, 1e-5f);
  auto t = [&](std::string name, std::vector<uint64_t> dims, GgmlType type, size_t bytes) {
    g.tensor(TensorSpec{.name = std::move(name),
                        .dims = std::move(dims),
                        .type = static_cast<uint32_t>(type),
                        .data = model::testing::Bytes(bytes, static_cast<uint8_t>(rng()))});
  };
  t("token_embd.weight", {64, 100}, GgmlType::kQ8_0, 6800);
  for (int i = 0; i < 3; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    t(b + "attn_norm.weight", {64}, GgmlType::kF32, 256);
    t(b + "attn_q.weight", {64, 64}, GgmlType::kF16, 8192);
    t(b + "attn_k.weight", {64, 32}, GgmlType::kF16, 4096);
    t(b + "attn_v.weight", {64, 32}, GgmlType::kQ8_0, 2176);
    t(b + "attn_output.weight", {64, 64}, GgmlType::kF16, 8192);
    t(b + "ffn_norm.weight", {64}, GgmlType::kF32, 256);
    t(b + "ffn_gate.weight", {64, 128}, GgmlType::kQ4_0, 4608);
    t(b + "ffn_up.weight", {64, 128}, GgmlType::kQ4_0, 4608);
    t(b + "ffn_down.weight", {128, 64}, GgmlType::kQ4_0, 4608);
  }
  t("output_norm.weight", {64}, GgmlType::kF32, 256);
  if (!tied) t("output.weight", {64, 100}, GgmlType::kF16, 12800);
  return g.build();
}

const Layout& find(const Plan& plan, int t, int p) {
  for (const Layout& l : plan.layouts)
    if (l.tensor == t && l.pipeline == p) return l;
  ADD_FAILURE() << "no layout T=" << t << " P=" << p;
  static const Layout none;
  return none;
}

TEST(PlannerModelSpec, GgufSizesByQuantisedType) {
  std::mt19937 rng(std::random_device{}());
  Scratch s;
  const fs::path path = s.dir / "tiny.gguf";
  write_bytes(path, tiny_gguf(/*tied=*/false, rng));
  const ModelSpec m = load_model_spec(path.string(), "f32");  // dtype ignored: sizes come from GGUF
  EXPECT_EQ(m.weights_from, "GGUF tensor sizes");
  // Per layer: 16,384 (q, o) + 6,272 (k, v) + 13,824 (MLP) + 512 (norms) = 36,992; x3 =
  // 110,976; + 6,800 + 12,800 + 256 = 130,832.
  EXPECT_EQ(m.weights.total(), 130'832ull);
  ASSERT_EQ(m.weights.layers.size(), 3u);
  EXPECT_EQ(m.weights.layers[2].attn_kv, 6'272ull);

  const PlanParams base{.context = 64, .batch = 2};
  PlanParams p2 = base;
  p2.gpus = 2;
  const Plan plan2 = make_plan(m, p2);
  const Layout& t2 = find(plan2, 2, 1);
  // T=2: per layer 8,192 + 6,272/2 (one KV head of two) + 13,824*64/128 = 6,912 + 512 = 18,752;
  // x3 = 56,256; + 6,800*50/100 + 12,800/2 + 256 = 66,312.
  EXPECT_EQ(t2.weight_bytes_per_gpu, 66'312ull);
  // KV: 2*3*1*16*2 = 192 bytes per token x 64 x 2 = 24,576.
  EXPECT_EQ(t2.kv_bytes_per_gpu, 24'576ull);
  // Activations, M = min(2048, 64*2) = 128: residual 2*128*64*2 = 32,768; attention
  // 128*(2*32 + 2*16)*2 = 24,576 < MLP 128*2*64*2 = 32,768; logits 2*50*4 = 400.
  EXPECT_EQ(t2.activation_bytes_per_gpu, 65'936ull);
  // T=1 P=2: 2 layers + embedding on the first stage (80,784), 1 layer + head + norm on the last.
  EXPECT_EQ(find(plan2, 1, 2).weight_bytes_per_gpu, 2 * 36'992ull + 6'800ull);

  PlanParams p4 = base;
  p4.gpus = 4;
  // T=4 (KV heads replicated in pairs): 4,096 + 3,136 + 13,824*32/128 = 3,456 + 512 = 11,200;
  // x3 = 33,600; + 1,700 + 3,200 + 256 = 38,756.
  EXPECT_EQ(find(make_plan(m, p4), 4, 1).weight_bytes_per_gpu, 38'756ull);
  EXPECT_EQ(find(make_plan(m, p4), 4, 1).kv_heads_per_rank, 1);

  PlanParams p3 = base;
  p3.gpus = 3;
  // 3 heads do not divide 4: only T=1 P=3; the last stage (1 layer + head + norm) is the largest.
  const Plan plan3 = make_plan(m, p3);
  ASSERT_EQ(plan3.layouts.size(), 1u);
  EXPECT_EQ(plan3.layouts[0].weight_bytes_per_gpu, 36'992ull + 12'800ull + 256ull);
}

// A 1-layer Qwen2-MoE-style GGUF: hidden 64, 4 experts of width 32 (top-2), a shared expert of
// width 64. Experts go to their own bucket, the shared expert to the MLP's, routers stay whole.
TEST(PlannerModelSpec, GgufMoeTensorsByBucket) {
  std::mt19937 rng(std::random_device{}());
  Scratch s;
  GgufBuilder g;
  g.str("general.architecture", "qwen2moe");
  g.scalar<uint32_t>("qwen2moe.embedding_length", GgufValueType::kUint32, 64);
  g.scalar<uint32_t>("qwen2moe.block_count", GgufValueType::kUint32, 1);
  g.scalar<uint32_t>("qwen2moe.attention.head_count", GgufValueType::kUint32, 4);
  g.scalar<uint32_t>("qwen2moe.attention.head_count_kv", GgufValueType::kUint32, 2);
  g.scalar<uint32_t>("qwen2moe.feed_forward_length", GgufValueType::kUint32, 32);
  g.scalar<uint32_t>("qwen2moe.expert_feed_forward_length", GgufValueType::kUint32, 32);
  g.scalar<uint32_t>("qwen2moe.expert_shared_feed_forward_length", GgufValueType::kUint32, 64);
  g.scalar<uint32_t>("qwen2moe.expert_count", GgufValueType::kUint32, 4);
  g.scalar<uint32_t>("qwen2moe.expert_used_count", GgufValueType::kUint32, 2);
  g.scalar<uint32_t>("qwen2moe.context_length", GgufValueType::kUint32, 256);
  g.scalar<float>("qwen2moe.attention.layer_norm_rms_epsilon", GgufValueType::kFloat32, 1e-6f);
  auto t = [&](std::string name, std::vector<uint64_t> dims) {
    uint64_t n = 4;  // F32
    for (uint64_t d : dims) n *= d;
    g.tensor(TensorSpec{.name = std::move(name),
                        .dims = std::move(dims),
                        .type = static_cast<uint32_t>(GgmlType::kF32),
                        .data = model::testing::Bytes(n, static_cast<uint8_t>(rng()))});
  };
  t("token_embd.weight", {64, 100});
  t("blk.0.attn_norm.weight", {64});
  t("blk.0.attn_q.weight", {64, 64});
  t("blk.0.attn_q.bias", {64});
  t("blk.0.attn_k.weight", {64, 32});
  t("blk.0.attn_k.bias", {32});
  t("blk.0.attn_v.weight", {64, 32});
  t("blk.0.attn_v.bias", {32});
  t("blk.0.attn_output.weight", {64, 64});
  t("blk.0.ffn_norm.weight", {64});
  t("blk.0.ffn_gate_inp.weight", {64, 4});
  t("blk.0.ffn_gate_exps.weight", {64, 32, 4});
  t("blk.0.ffn_up_exps.weight", {64, 32, 4});
  t("blk.0.ffn_down_exps.weight", {32, 64, 4});
  t("blk.0.ffn_gate_inp_shexp.weight", {64});
  t("blk.0.ffn_gate_shexp.weight", {64, 64});
  t("blk.0.ffn_up_shexp.weight", {64, 64});
  t("blk.0.ffn_down_shexp.weight", {64, 64});
  t("output_norm.weight", {64});
  const fs::path path = s.dir / "moe.gguf";
  write_bytes(path, g.build());
  const ModelSpec m = load_model_spec(path.string());
  ASSERT_TRUE(m.config.is_moe());
  const LayerWeights& l = m.weights.layers.at(0);
  // Experts: 3 * 4 * 64 * 32 floats = 24,576 * 4 bytes; shared expert 3 * 64 * 64 * 4; routers
  // (64 * 4 + 64) and the two norms (2 * 64) at 4 bytes stay replicated.
  EXPECT_EQ(l.experts, 98'304ull);
  EXPECT_EQ(l.mlp, 49'152ull);
  EXPECT_EQ(l.replicated, (64ull * 4 + 64 + 2 * 64) * 4);
  // EP=2 halves the experts and keeps everything else whole:
  // q, o + biases 2 * 64 * 64 * 4 + 64 * 4 = 33,024; k, v + biases 2 * (64 * 32 + 32) * 4 =
  // 16,640; shared 49,152; replicated 1,792; experts 49,152; embedding 25,600 (tied: held once
  // with P = 1); final norm 256.
  const Layout e2 = evaluate(m, {.gpus = 2, .context = 16}, 1, 1, 2);
  EXPECT_EQ(e2.experts_per_rank, 2);
  EXPECT_EQ(e2.weight_bytes_per_gpu, 33'024ull + 16'640 + 49'152 + 1'792 + 49'152 + 25'600 + 256);
  EXPECT_EQ(evaluate(m, {.gpus = 1, .context = 16}, 1, 1).weight_bytes_per_gpu, m.weights.total());
}

TEST(PlannerModelSpec, TiedEmbeddingSitsOnBothEnds) {
  std::mt19937 rng(std::random_device{}());
  Scratch s;
  const fs::path path = s.dir / "tied.gguf";
  write_bytes(path, tiny_gguf(/*tied=*/true, rng));
  const ModelSpec m = load_model_spec(path.string());
  EXPECT_TRUE(m.config.tied_embeddings);
  EXPECT_EQ(m.weights.lm_head, 0ull);
  EXPECT_EQ(m.weights.total(), 130'832ull - 12'800ull);
  // P=3: the last stage holds its layer, the embedding table again (as the head) and the norm.
  const Plan plan = make_plan(m, {.gpus = 3, .context = 64});
  EXPECT_EQ(find(plan, 1, 3).weight_bytes_per_gpu, 36'992ull + 6'800ull + 256ull);
  // One GPU holds the table once.
  EXPECT_EQ(evaluate(m, {.gpus = 1}, 1, 1).weight_bytes_per_gpu, 130'832ull - 12'800ull);
}

TEST(PlannerModelSpec, MissingAndBrokenInputs) {
  Scratch s;
  EXPECT_THROW(load_model_spec((s.dir / "nope.gguf").string()), Error);
  EXPECT_THROW(load_model_spec(s.dir.string()), Error);  // a directory without config.json
  write_bytes(s.dir / "bad.gguf", {'G', 'G', 'U', 'F', 3, 0});
  EXPECT_THROW(load_model_spec((s.dir / "bad.gguf").string()), Error);
#if TESSERA_HAVE_JSON
  write_bytes(s.dir / "c.json", {'{', 'x'});
  EXPECT_THROW(load_model_spec((s.dir / "c.json").string()), Error);
#endif
}

#if TESSERA_HAVE_JSON
TEST(PlannerModelSpec, HuggingFaceDirectory) {
  using model::testing::make_safetensors;
  using model::testing::random_st_bytes;
  using model::testing::StTensor;
  std::mt19937 rng(std::random_device{}());
  Scratch s;
  // hidden 8, 2 layers, 2 heads / 1 KV head of 4, intermediate 16, vocab 10, tied; BF16 but
  // the norms in F32.
  model::testing::write_file(s.dir / "config.json", std::string(R"({"model_type": "llama",
      "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
      "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 10,
      "tie_word_embeddings": true})"));
  // Only config.json: the parameter count at --dtype. Params: embedding 80; per layer q, o 64
  // each, k, v 32 each, MLP 3*128 = 384, norms 16 -> 592; x2 = 1,184; final norm 8 -> 1,272.
  const ModelSpec counted = load_model_spec(s.dir.string(), "int8");
  EXPECT_EQ(counted.weights.total(), 1'272ull);
  EXPECT_EQ(counted.weights_from, "parameter count at int8");

  std::vector<StTensor> ts = {{"model.embed_tokens.weight", "BF16", {10, 8}, {}},
                              {"model.norm.weight", "F32", {8}, {}}};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "model.layers." + std::to_string(i) + ".";
    ts.push_back({b + "self_attn.q_proj.weight", "BF16", {8, 8}, {}});
    ts.push_back({b + "self_attn.k_proj.weight", "BF16", {4, 8}, {}});
    ts.push_back({b + "self_attn.v_proj.weight", "BF16", {4, 8}, {}});
    ts.push_back({b + "self_attn.o_proj.weight", "BF16", {8, 8}, {}});
    ts.push_back({b + "mlp.gate_proj.weight", "BF16", {16, 8}, {}});
    ts.push_back({b + "mlp.up_proj.weight", "BF16", {16, 8}, {}});
    ts.push_back({b + "mlp.down_proj.weight", "BF16", {8, 16}, {}});
    ts.push_back({b + "input_layernorm.weight", "F32", {8}, {}});
    ts.push_back({b + "post_attention_layernorm.weight", "F32", {8}, {}});
  }
  for (StTensor& t : ts) {
    size_t n = t.dtype == "F32" ? 4 : 2;
    for (int64_t d : t.shape) n *= static_cast<size_t>(d);
    t.data = random_st_bytes(rng, n);
  }
  model::testing::write_file(s.dir / "model.safetensors", make_safetensors(ts));
  const ModelSpec m = load_model_spec(s.dir.string());
  EXPECT_EQ(m.weights_from, "safetensors sizes");
  // Bytes: embedding 160; per layer (q, o) 256 + (k, v) 128 + MLP 768 + norms 64 = 1,216; x2 =
  // 2,432; final norm 32 -> 2,624.
  EXPECT_EQ(m.weights.total(), 2'624ull);
  // T=2 (the one KV head on both ranks): per layer 128 + 128 + 384 + 64 = 704; x2 = 1,408;
  // + embedding/2 = 80 + 32 -> 1,520.
  EXPECT_EQ(evaluate(m, {.gpus = 2}, 2, 1).weight_bytes_per_gpu, 1'520ull);
}
#endif

// The default model, when downloaded: SmolLM2-135M has 9 heads and 3 KV heads, so T is 1, 3 or 9.
TEST(PlannerModelSpec, DefaultModelHeads) {
  const char* home = std::getenv("HOME");
  const fs::path path =
      fs::path(home ? home : "/tmp") / ".cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not downloaded";
  const ModelSpec m = load_model_spec(path.string());
  EXPECT_EQ(m.config.num_heads, 9);
  const Plan plan = make_plan(m, {.gpus = 18, .gpus_per_node = 9});
  std::vector<int> ts;
  for (const Layout& l : plan.layouts) ts.push_back(l.tensor);
  EXPECT_EQ(ts, (std::vector<int>{9, 3, 1}));
  EXPECT_EQ(plan.rejected.size(), 3u);  // T = 18, 6, 2
  // One GPU holds every tensor as stored: the data section minus alignment padding.
  const model::GgufFile f = model::GgufFile::open(path.string());
  const uint64_t data_bytes = fs::file_size(path) - f.data_offset();
  const uint64_t one = evaluate(m, {.gpus = 1}, 1, 1).weight_bytes_per_gpu;
  EXPECT_LE(one, data_bytes);
  EXPECT_GE(one + f.tensors().size() * f.alignment(), data_bytes);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 9);
  EXPECT_TRUE(plan.recommended->fits);
}

}  // namespace
}  // namespace tessera::planner
