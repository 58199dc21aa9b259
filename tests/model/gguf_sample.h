// Test helper: a small but complete GGUF image holding every metadata value type (nested arrays
// included) and tensors of several ggml types filled with random bytes.
#pragma once

#include <random>

#include "gguf_builder.h"

namespace tessera::model::testing {

struct Sample {
  Bytes bytes;
  std::vector<TensorSpec> tensors;
};

inline Bytes random_bytes(std::mt19937& rng, size_t n) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

inline Sample make_sample(uint32_t version, uint64_t alignment, uint32_t seed) {
  std::mt19937 rng(seed);
  GgufBuilder g;
  g.version = version;
  g.alignment = alignment;
  g.str("general.architecture", "llama");
  if (alignment != 32)
    g.scalar<uint32_t>("general.alignment", GgufValueType::kUint32,
                       static_cast<uint32_t>(alignment));
  g.scalar<uint8_t>("t.u8", GgufValueType::kUint8, 200);
  g.scalar<int8_t>("t.i8", GgufValueType::kInt8, -5);
  g.scalar<uint16_t>("t.u16", GgufValueType::kUint16, 60000);
  g.scalar<int16_t>("t.i16", GgufValueType::kInt16, -30000);
  g.scalar<uint32_t>("t.u32", GgufValueType::kUint32, 4000000000u);
  g.scalar<int32_t>("t.i32", GgufValueType::kInt32, -2000000000);
  g.scalar<float>("t.f32", GgufValueType::kFloat32, 1.5f);
  g.scalar<uint8_t>("t.bool", GgufValueType::kBool, 1);
  g.scalar<uint64_t>("t.u64", GgufValueType::kUint64, (uint64_t{1} << 63) + 5);
  g.scalar<int64_t>("t.i64", GgufValueType::kInt64, -(int64_t{1} << 40));
  g.scalar<double>("t.f64", GgufValueType::kFloat64, 3.25);
  g.str("t.utf8", "h\xc3\xa9llo");
  {
    Bytes e;
    for (uint32_t v : {1u, 2u, 3u}) put<uint32_t>(e, v);
    g.kv("t.arr_u32", GgufValueType::kArray, array_payload(GgufValueType::kUint32, 3, e));
  }
  {
    Bytes e;
    for (const char* s : {"a", "bc", ""}) put_str(e, s);
    g.kv("t.arr_str", GgufValueType::kArray, array_payload(GgufValueType::kString, 3, e));
  }
  {
    Bytes e;
    put<float>(e, 0.5f);
    put<float>(e, -2.0f);
    g.kv("t.arr_f32", GgufValueType::kArray, array_payload(GgufValueType::kFloat32, 2, e));
  }
  {
    Bytes e = {0, 1};
    g.kv("t.arr_bool", GgufValueType::kArray, array_payload(GgufValueType::kBool, 2, e));
  }
  g.kv("t.arr_empty", GgufValueType::kArray, array_payload(GgufValueType::kInt64, 0, {}));
  {
    Bytes a, b;
    put<int32_t>(a, 1);
    put<int32_t>(a, 2);
    put<int32_t>(b, 3);
    Bytes outer = array_payload(GgufValueType::kInt32, 2, a);
    put_bytes(outer, array_payload(GgufValueType::kInt32, 1, b));
    g.kv("t.nested", GgufValueType::kArray, array_payload(GgufValueType::kArray, 2, outer));
  }
  Sample s;
  s.tensors = {
      {"f32.weight", {4, 3}, 0, random_bytes(rng, 4 * 3 * 4), {}},
      {"f16.weight", {32, 2}, 1, random_bytes(rng, 32 * 2 * 2), {}},
      {"q8_0.weight", {64, 2}, 8, random_bytes(rng, 2 * 2 * 34), {}},
      {"q4_1.weight", {32, 3}, 3, random_bytes(rng, 3 * 20), {}},
      {"q4_k.weight", {256, 1}, 12, random_bytes(rng, 144), {}},
      {"iq4_xs.weight", {256, 1}, 23, random_bytes(rng, 136), {}},  // parses, cannot compute
      {"norm.weight", {7}, 0, random_bytes(rng, 7 * 4), {}},
  };
  for (const auto& t : s.tensors) g.tensor(t);
  s.bytes = g.build();
  return s;
}

}  // namespace tessera::model::testing
