// Hugging Face directories on disk: single-file and two-shard weights, tokenizer file discovery,
// and missing or inconsistent files raising Error.
#include "tessera/model/hf_dir.h"

#include <gtest/gtest.h>

#if TESSERA_HAVE_JSON

#include <nlohmann/json.hpp>

#include "safetensors_writer.h"
#include "tessera/core/error.h"
#include "tessera/model/model_config.h"

namespace tessera::model {
namespace {

using testing::make_safetensors;
using testing::random_st_bytes;
using testing::StTensor;
using testing::TempDir;
using testing::write_file;

ErrorCode open_error(const std::filesystem::path& dir) {
  try {
    HfDirectory::open(dir.string());
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;  // opened: not an error
}

const char* kConfig = R"({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 2})";

TEST(HfDirectory, SingleFile) {
  std::mt19937 rng(std::random_device{}());
  TempDir dir;
  const std::vector<StTensor> specs = {
      {"model.norm.weight", "F32", {8}, random_st_bytes(rng, 32)},
      {"lm_head.weight", "BF16", {4, 8}, random_st_bytes(rng, 64)},
  };
  write_file(dir.path() / "config.json", std::string(kConfig));
  write_file(dir.path() / "tokenizer.json", std::string("{}"));
  write_file(dir.path() / "model.safetensors", make_safetensors(specs));
  EXPECT_TRUE(HfDirectory::looks_like(dir.path().string()));
  const HfDirectory d = HfDirectory::open(dir.path().string());
  EXPECT_EQ(d.config()["model_type"], "llama");
  EXPECT_EQ(d.config()["hidden_size"].get<int>(), 8);
  ASSERT_TRUE(d.tokenizer_json().has_value());
  EXPECT_EQ(*d.tokenizer_json(), (dir.path() / "tokenizer.json").string());
  EXPECT_FALSE(d.tokenizer_config().has_value());
  EXPECT_EQ(d.tensor_names(), (std::vector<std::string>{"lm_head.weight", "model.norm.weight"}));
  EXPECT_EQ(d.shards().size(), 1u);
  for (const auto& spec : specs) {
    ASSERT_TRUE(d.has(spec.name));
    const Tensor t = d.tensor(spec.name);
    EXPECT_EQ(t.shape(), spec.shape);
    EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0);
  }
  EXPECT_FALSE(d.has("nope"));
  EXPECT_THROW(d.tensor("nope"), Error);
}

TEST(HfDirectory, TwoShardsWithIndex) {
  std::mt19937 rng(std::random_device{}());
  TempDir dir;
  const std::vector<StTensor> a = {{"x.0", "F32", {2, 3}, random_st_bytes(rng, 24)},
                                   {"x.1", "F16", {4}, random_st_bytes(rng, 8)}};
  const std::vector<StTensor> b = {{"y.0", "BF16", {3, 2}, random_st_bytes(rng, 12)},
                                   {"unlisted", "F32", {1}, random_st_bytes(rng, 4)}};
  write_file(dir.path() / "config.json", std::string(kConfig));
  write_file(dir.path() / "tokenizer_config.json", std::string("{}"));
  write_file(dir.path() / "model-00001-of-00002.safetensors", make_safetensors(a));
  write_file(dir.path() / "model-00002-of-00002.safetensors", make_safetensors(b));
  const nlohmann::json index = {{"metadata", {{"total_size", 48}}},
                                {"weight_map",
                                 {{"x.0", "model-00001-of-00002.safetensors"},
                                  {"x.1", "model-00001-of-00002.safetensors"},
                                  {"y.0", "model-00002-of-00002.safetensors"}}}};
  write_file(dir.path() / "model.safetensors.index.json", index.dump());
  const HfDirectory d = HfDirectory::open(dir.path().string());
  EXPECT_EQ(d.shards().size(), 2u);
  EXPECT_TRUE(d.tokenizer_config().has_value());
  EXPECT_EQ(d.tensor_names(), (std::vector<std::string>{"x.0", "x.1", "y.0"}));
  EXPECT_FALSE(d.has("unlisted"));  // the index is authoritative
  for (const auto& spec : {a[0], a[1], b[0]}) {
    const Tensor t = d.tensor(spec.name);
    EXPECT_EQ(t.shape(), spec.shape);
    EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0) << spec.name;
  }

  // The index names a tensor its shard lacks.
  nlohmann::json bad = index;
  bad["weight_map"]["z"] = "model-00001-of-00002.safetensors";
  write_file(dir.path() / "model.safetensors.index.json", bad.dump());
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
  // A shard outside the directory.
  bad = index;
  bad["weight_map"]["x.0"] = "../model-00001-of-00002.safetensors";
  write_file(dir.path() / "model.safetensors.index.json", bad.dump());
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
  // A missing shard.
  bad = index;
  bad["weight_map"]["x.0"] = "model-00009-of-00009.safetensors";
  write_file(dir.path() / "model.safetensors.index.json", bad.dump());
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kNotFound);
  // No weight_map, or not JSON at all.
  write_file(dir.path() / "model.safetensors.index.json", std::string(R"({"metadata": {}})"));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
  write_file(dir.path() / "model.safetensors.index.json", std::string("{oops"));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
}

TEST(HfDirectory, MissingOrBrokenFiles) {
  TempDir dir;
  EXPECT_EQ(open_error(dir.path() / "nonexistent"), ErrorCode::kNotFound);
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kNotFound);  // no config.json
  EXPECT_FALSE(HfDirectory::looks_like(dir.path().string()));
  write_file(dir.path() / "config.json", std::string("{not json"));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
  write_file(dir.path() / "config.json", std::string("[1]"));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
  write_file(dir.path() / "config.json", std::string(kConfig));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kNotFound);  // no weights
  write_file(dir.path() / "model.safetensors", std::string("short"));
  EXPECT_EQ(open_error(dir.path()), ErrorCode::kCorruptFile);
}

// An integer field given as 1e300 or 2^40 is refused naming the field: nlohmann alone would cast
// it to int (undefined behaviour).
TEST(HfConfig, OutOfRangeIntegersAreRefusedByName) {
  for (const char* value : {"1e300", "1099511627776", "-1e300", "\"8\"", "8.5"}) {
    const auto j = nlohmann::json::parse(std::string(R"({"model_type": "llama", "vocab_size": )") +
                                         value + R"(, "num_hidden_layers": 2})");
    try {
      config_from_hf(j);
      ADD_FAILURE() << value << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("vocab_size"), std::string::npos) << e.what();
    }
  }
  const auto j = nlohmann::json::parse(
      R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1,
          "num_attention_heads": 2, "intermediate_size": 8, "rms_norm_eps": 1e300})");
  EXPECT_THROW(config_from_hf(j), Error);  // a float out of float's range
}

// OLMoE-1B-7B's config.json: llama attention with a whole-projection q/k RMSNorm, 64 experts of
// width intermediate_size, top-8, no renormalisation; clip_qkv (clamped projections) is refused.
TEST(HfConfig, OlmoeReadsItsExpertsAndFullWidthQkNorm) {
  auto j = nlohmann::json::parse(
      R"({"model_type": "olmoe", "vocab_size": 50304, "hidden_size": 2048, "num_hidden_layers": 16,
          "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 1024,
          "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": false,
          "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "clip_qkv": null,
          "max_position_embeddings": 4096, "tie_word_embeddings": false})");
  const ModelConfig c = config_from_hf(j);
  EXPECT_EQ(c.architecture, "olmoe");
  EXPECT_TRUE(c.qk_norm && c.qk_norm_full);
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.num_experts_used, 8);
  EXPECT_EQ(c.expert_intermediate_size, 1024);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_EQ(c.rope.style, ops::RopeStyle::kNeox);
  j["clip_qkv"] = 8.0;
  try {
    config_from_hf(j);
    ADD_FAILURE() << "clip_qkv accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("clip_qkv"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera::model

#endif  // TESSERA_HAVE_JSON
