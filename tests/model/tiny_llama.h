// A tiny llama GGUF written by the tests themselves (random f32 weights, 2 layers, 4 heads over 2
// KV heads, hidden 32, 64-token vocabulary), so model, worker and device tests need no model file.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gguf_builder.h"

namespace tessera::model::testing {

constexpr int kVocab = 64, kHidden = 32, kHeads = 4, kKvHeads = 2, kFf = 64, kLayers = 2;

inline Bytes f32_bytes(std::mt19937& rng, size_t n, float mean) {
  std::normal_distribution<float> nd(mean, 0.3f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  Bytes b(n * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

inline std::string write_tiny_llama(uint32_t seed) {
  std::mt19937 rng(seed);
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.scalar<uint32_t>("llama.embedding_length", GgufValueType::kUint32, kHidden);
  g.scalar<uint32_t>("llama.block_count", GgufValueType::kUint32, kLayers);
  g.scalar<uint32_t>("llama.attention.head_count", GgufValueType::kUint32, kHeads);
  g.scalar<uint32_t>("llama.attention.head_count_kv", GgufValueType::kUint32, kKvHeads);
  g.scalar<uint32_t>("llama.feed_forward_length", GgufValueType::kUint32, kFf);
  g.scalar<uint32_t>("llama.context_length", GgufValueType::kUint32, 128);
  g.scalar<float>("llama.attention.layer_norm_rms_epsilon", GgufValueType::kFloat32, 1e-5f);
  const uint64_t kv = kKvHeads * (kHidden / kHeads);
  // ggml order: {columns, rows}.
  auto t = [&](const std::string& name, std::vector<uint64_t> dims, float mean = 0.0f) {
    size_t n = 1;
    for (uint64_t d : dims) n *= d;
    g.tensor({.name = name, .dims = dims, .type = 0, .data = f32_bytes(rng, n, mean)});
  };
  t("token_embd.weight", {kHidden, kVocab});
  t("output_norm.weight", {kHidden}, 1.0f);
  t("output.weight", {kHidden, kVocab});
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t(p + "attn_norm.weight", {kHidden}, 1.0f);
    t(p + "ffn_norm.weight", {kHidden}, 1.0f);
    t(p + "attn_q.weight", {kHidden, kHidden});
    t(p + "attn_k.weight", {kHidden, kv});
    t(p + "attn_v.weight", {kHidden, kv});
    t(p + "attn_output.weight", {kHidden, kHidden});
    t(p + "ffn_gate.weight", {kHidden, kFf});
    t(p + "ffn_up.weight", {kHidden, kFf});
    t(p + "ffn_down.weight", {kFf, kHidden});
  }
  const Bytes image = g.build();
  const std::string path = (std::filesystem::path(::testing::TempDir()) /
                            ("tiny_llama_" + std::to_string(seed) + ".gguf"))
                               .string();
  // Test processes run in parallel and map this file: write a private copy and rename it into
  // place, so a reader never sees a file being rewritten (a mapped file truncated under a reader
  // is a SIGBUS).
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::ofstream(tmp, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data()), std::streamsize(image.size()));
  std::filesystem::rename(tmp, path);
  return path;
}

}  // namespace tessera::model::testing
