// GGUF reader on well-formed images (every value type, nested arrays, tensors of several ggml
// types, v2/v3, alignments) and on the real default model when it is installed.
#include "tessera/model/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "gguf_builder.h"
#include "gguf_sample.h"
#include "tessera/core/error.h"

namespace tessera::model {
namespace {

using testing::Bytes;
using testing::GgufBuilder;
using testing::Sample;

class GgufLayouts : public ::testing::TestWithParam<std::tuple<uint32_t, uint64_t>> {};

TEST_P(GgufLayouts, ParsesEveryValueTypeAndTensor) {
  const auto [version, alignment] = GetParam();
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Sample s = testing::make_sample(version, alignment, seed);
  const GgufFile f = GgufFile::parse(s.bytes, "sample.gguf");

  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  EXPECT_EQ(f.path(), "sample.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -5);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.get_float("t.f64"), 3.25);
  EXPECT_EQ(f.get_float("t.u32"), 4e9);  // integers read as floats too
  EXPECT_TRUE(f.get_bool("t.bool", false));
  EXPECT_EQ(f.get_string("t.utf8"), "h\xc3\xa9llo");
  EXPECT_EQ(f.find("t.u64")->type, GgufValueType::kUint64);
  EXPECT_EQ(std::get<uint64_t>(f.find("t.u64")->value), (uint64_t{1} << 63) + 5);
  EXPECT_THROW(f.get_int("t.u64"), Error);  // does not fit in int64
  EXPECT_EQ(f.get_int_array("t.arr_u32"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(f.get_string_array("t.arr_str"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(f.get_float_array("t.arr_f32"), (std::vector<double>{0.5, -2.0}));
  EXPECT_TRUE(f.get_int_array("t.arr_empty").empty());
  const auto& nested = f.find("t.nested")->as_array();
  ASSERT_EQ(nested.elem_type, GgufValueType::kArray);
  ASSERT_EQ(nested.items.size(), 2u);
  EXPECT_EQ(nested.items[0].as_array().elem_type, GgufValueType::kInt32);
  ASSERT_EQ(nested.items[0].as_array().items.size(), 2u);
  EXPECT_EQ(nested.items[0].as_array().items[1].as_int(), 2);
  EXPECT_EQ(nested.items[1].as_array().items[0].as_int(), 3);
  const auto& bools = f.find("t.arr_bool")->as_array();
  ASSERT_EQ(bools.items.size(), 2u);
  EXPECT_FALSE(bools.items[0].as_bool());
  EXPECT_TRUE(bools.items[1].as_bool());

  ASSERT_EQ(f.tensors().size(), s.tensors.size());
  for (const auto& spec : s.tensors) {
    SCOPED_TRACE(spec.name);
    const GgufTensorInfo* info = f.find_tensor(spec.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->ggml_type, spec.type);
    EXPECT_EQ(info->nbytes, spec.data.size());
    std::vector<int64_t> reversed(spec.dims.rbegin(), spec.dims.rend());
    EXPECT_EQ(info->shape(), reversed);
    if (!dtype_from_ggml(spec.type)) {
      try {
        f.tensor(spec.name);
        ADD_FAILURE() << "expected kUnsupported";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
        EXPECT_NE(std::string(e.what()).find(spec.name), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(ggml_type_name(spec.type)), std::string::npos);
      }
      continue;
    }
    const Tensor t = f.tensor(spec.name);
    EXPECT_EQ(t.shape(), reversed);
    EXPECT_EQ(t.dtype(), *dtype_from_ggml(spec.type));
    EXPECT_EQ(t.nbytes(), spec.data.size());
    EXPECT_FALSE(t.storage()->owned());
    EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(VersionsAndAlignments, GgufLayouts,
                         ::testing::Combine(::testing::Values(2u, 3u),
                                            ::testing::Values(uint64_t{32}, uint64_t{1},
                                                              uint64_t{8}, uint64_t{64})));

TEST(Gguf, TensorOutlivesTheFileObject) {
  const Sample s = testing::make_sample(3, 32, 7);
  Tensor t;
  {
    const GgufFile f = GgufFile::parse(s.bytes);
    t = f.tensor("f32.weight");
  }
  const auto& spec = s.tensors.front();
  ASSERT_EQ(spec.name, "f32.weight");
  EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0);
}

TEST(Gguf, GettersReportMissingAndMistypedKeys) {
  const GgufFile f = GgufFile::parse(testing::make_sample(3, 32, 1).bytes);
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code_of([&] { f.get_int("nope"); }), ErrorCode::kNotFound);
  EXPECT_EQ(code_of([&] { f.get_string("nope"); }), ErrorCode::kNotFound);
  EXPECT_EQ(code_of([&] { f.tensor("nope"); }), ErrorCode::kNotFound);
  EXPECT_EQ(code_of([&] { f.get_int("general.architecture"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { f.get_string("t.u8"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { f.get_string_array("t.arr_u32"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { f.get_int_array("t.arr_f32"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { f.get_bool("t.u8", true); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(f.get_int("nope", 42), 42);
  EXPECT_EQ(f.get_float("nope", 0.25), 0.25);
  EXPECT_EQ(f.get_string("nope", "dflt"), "dflt");
  EXPECT_TRUE(f.get_bool("nope", true));
  EXPECT_FALSE(f.has("nope"));
  EXPECT_TRUE(f.has("t.nested"));
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST(Gguf, TypeTableCoversGgml) {
  EXPECT_EQ(ggml_type_name(0), "f32");
  EXPECT_EQ(ggml_type_name(12), "q4_K");
  EXPECT_EQ(ggml_type_name(30), "bf16");
  EXPECT_EQ(ggml_type_name(99), "type 99");
  EXPECT_EQ(ggml_type_name(4), "type 4");
  struct Expect {
    uint32_t id, elems, bytes;
  };
  for (const Expect& e :
       {Expect{0, 1, 4}, {1, 1, 2},      {2, 32, 18},    {3, 32, 20},    {6, 32, 22},
        {7, 32, 24},     {8, 32, 34},    {9, 32, 36},    {10, 256, 84},  {11, 256, 110},
        {12, 256, 144},  {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {16, 256, 66},
        {17, 256, 74},   {18, 256, 98},  {19, 256, 50},  {20, 32, 18},   {21, 256, 110},
        {22, 256, 82},   {23, 256, 136}, {24, 1, 1},     {25, 1, 2},     {26, 1, 4},
        {27, 1, 8},      {28, 1, 8},     {29, 256, 56},  {30, 1, 2},     {34, 256, 54},
        {35, 256, 66},   {39, 32, 17}}) {
    const GgmlTypeInfo* info = ggml_type_info(e.id);
    ASSERT_NE(info, nullptr) << e.id;
    EXPECT_EQ(info->block_elems, e.elems) << e.id;
    EXPECT_EQ(info->block_bytes, e.bytes) << e.id;
  }
  EXPECT_EQ(dtype_from_ggml(3), DType::kQ4_1);
  EXPECT_EQ(dtype_from_ggml(8), DType::kQ8_0);
  EXPECT_EQ(dtype_from_ggml(30), DType::kBF16);
  EXPECT_EQ(dtype_from_ggml(10), DType::kQ2_K);
  EXPECT_EQ(dtype_from_ggml(14), DType::kQ6_K);
  EXPECT_EQ(dtype_from_ggml(15), std::nullopt);  // Q8_K: an activation type, never a weight here
  EXPECT_EQ(dtype_from_ggml(16), std::nullopt);
  // Every DType a ggml id maps to has the same block geometry as that id.
  for (uint32_t id = 0; id < 64; ++id) {
    if (auto dt = dtype_from_ggml(id)) {
      ASSERT_NE(ggml_type_info(id), nullptr);
      EXPECT_EQ(dtype_info(*dt).block_elems, static_cast<int>(ggml_type_info(id)->block_elems));
      EXPECT_EQ(dtype_info(*dt).block_bytes, static_cast<int>(ggml_type_info(id)->block_bytes));
    }
  }
}

TEST(Gguf, OpensFromDisk) {
  const Sample s = testing::make_sample(3, 32, 3);
  const auto path = std::filesystem::temp_directory_path() /
                    ("tessera_gguf_test_" + std::to_string(std::random_device{}()) + ".gguf");
  {
    FILE* fp = std::fopen(path.c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    ASSERT_EQ(std::fwrite(s.bytes.data(), 1, s.bytes.size(), fp), s.bytes.size());
    std::fclose(fp);
  }
  Tensor t;
  {
    const GgufFile f = GgufFile::open(path.string());
    EXPECT_EQ(f.path(), path.string());
    t = f.tensor("q8_0.weight");
  }
  std::filesystem::remove(path);  // the mapping keeps the bytes alive
  const auto& spec = s.tensors[2];
  ASSERT_EQ(spec.name, "q8_0.weight");
  EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0);
  EXPECT_THROW(GgufFile::open(path.string() + ".missing"), Error);
}

std::string default_model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

TEST(Gguf, RealDefaultModel) {
  const std::string path = default_model_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " missing";
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_NE(f.get_string("tokenizer.chat_template").find("<|im_start|>"), std::string::npos);

  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ggml_type, static_cast<uint32_t>(GgmlType::kQ8_0));
  const Tensor e = f.tensor("token_embd.weight");
  EXPECT_EQ(e.shape(), (Shape{49152, 576}));
  EXPECT_EQ(e.dtype(), DType::kQ8_0);
  EXPECT_EQ(e.nbytes(), size_t{49152} * 576 / 32 * 34);

  const Tensor q = f.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.shape(), (Shape{576, 576}));
  EXPECT_EQ(q.dtype(), DType::kQ4_1);
  // Every tensor is loadable and the last one ends within the file.
  uint64_t end = 0;
  for (const auto& info : f.tensors()) {
    const Tensor t = f.tensor(info.name);
    EXPECT_EQ(t.nbytes(), info.nbytes) << info.name;
    end = std::max(end, f.data_offset() + info.offset + info.nbytes);
  }
  EXPECT_LE(end, std::filesystem::file_size(path));
  // A Q8_0 block's scale is a finite, non-zero half for real embeddings.
  const auto* blk = static_cast<const BlockQ8_0*>(e.data());
  EXPECT_NE(blk->d & 0x7fff, 0);
  EXPECT_NE(blk->d & 0x7c00, 0x7c00);
}

}  // namespace
}  // namespace tessera::model
