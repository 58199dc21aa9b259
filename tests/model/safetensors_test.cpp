// Safetensors reader: round trips of F32/F16/BF16/I32 tensors on random data, unsupported dtypes,
// and corrupt headers (lengths, JSON, ranges, overlaps, truncation, bit flips) raising Error.
#include "tessera/model/safetensors.h"

#include <gtest/gtest.h>

#include "tessera/core/error.h"

#if TESSERA_HAVE_JSON

#include "safetensors_writer.h"

namespace tessera::model {
namespace {

using testing::make_safetensors;
using testing::random_st_bytes;
using testing::safetensors_raw;
using testing::StBytes;
using testing::StTensor;

std::vector<StTensor> sample_tensors(uint32_t seed) {
  std::mt19937 rng(seed);
  return {
      {"model.embed_tokens.weight", "F32", {5, 4}, random_st_bytes(rng, 5 * 4 * 4)},
      {"a.half", "F16", {3, 2, 2}, random_st_bytes(rng, 12 * 2)},
      {"b.bf16", "BF16", {6}, random_st_bytes(rng, 6 * 2)},
      {"c.ids", "I32", {2, 3}, random_st_bytes(rng, 6 * 4)},
      {"d.long", "I64", {2}, random_st_bytes(rng, 16)},
      {"e.scalar", "F32", {}, random_st_bytes(rng, 4)},
  };
}

void expect_error(const StBytes& bytes, ErrorCode code, std::vector<std::string> parts = {}) {
  try {
    SafetensorsFile::parse(bytes, "bad.safetensors");
    ADD_FAILURE() << "parsed without error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << p << "' missing in: " << e.what();
  }
}

TEST(Safetensors, RoundTripsTensors) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto specs = sample_tensors(seed);
  const SafetensorsFile f = SafetensorsFile::parse(make_safetensors(specs), "x.safetensors");
  EXPECT_EQ(f.data_offset() % 8, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().count("ignored"), 0u);
  EXPECT_EQ(f.tensors().size(), specs.size());
  EXPECT_EQ(f.tensor_names(), (std::vector<std::string>{"a.half", "b.bf16", "c.ids", "d.long",
                                                        "e.scalar", "model.embed_tokens.weight"}));
  const std::map<std::string, DType> dtypes = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"I32", DType::kI32}};
  for (const auto& spec : specs) {
    SCOPED_TRACE(spec.name);
    ASSERT_TRUE(f.has(spec.name));
    if (!dtypes.count(spec.dtype)) {
      try {
        f.tensor(spec.name);
        ADD_FAILURE() << "expected kUnsupported";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
        EXPECT_NE(std::string(e.what()).find(spec.name), std::string::npos);
        EXPECT_NE(std::string(e.what()).find(spec.dtype), std::string::npos);
      }
      continue;
    }
    const Tensor t = f.tensor(spec.name);
    EXPECT_EQ(t.shape(), spec.shape);
    EXPECT_EQ(t.dtype(), dtypes.at(spec.dtype));
    EXPECT_EQ(t.nbytes(), spec.data.size());
    EXPECT_EQ(std::memcmp(t.data(), spec.data.data(), spec.data.size()), 0);
  }
  EXPECT_FALSE(f.has("nope"));
  EXPECT_THROW(f.tensor("nope"), Error);
}

TEST(Safetensors, OpensFromDiskAndOutlivesTheFile) {
  const auto specs = sample_tensors(5);
  testing::TempDir dir;
  const auto path = dir.path() / "m.safetensors";
  testing::write_file(path, make_safetensors(specs));
  Tensor t;
  {
    const SafetensorsFile f = SafetensorsFile::open(path.string());
    EXPECT_EQ(f.path(), path.string());
    t = f.tensor("model.embed_tokens.weight");
  }
  EXPECT_EQ(std::memcmp(t.data(), specs[0].data.data(), specs[0].data.size()), 0);
  EXPECT_THROW(SafetensorsFile::open((dir.path() / "missing").string()), Error);
}

TEST(Safetensors, UnknownDtypeParsesButIsUnsupported) {
  const auto f = SafetensorsFile::parse(
      safetensors_raw(R"({"w":{"dtype":"F4X","shape":[3],"data_offsets":[0,2]}})", StBytes(2)));
  EXPECT_EQ(f.find("w")->dtype_name, "F4X");
  try {
    f.tensor("w");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

TEST(Safetensors, CorruptHeaders) {
  using testing::safetensors_raw;
  expect_error({}, ErrorCode::kCorruptFile, {"shorter than"});
  expect_error(StBytes(7), ErrorCode::kCorruptFile);
  StBytes huge(16, 0);
  huge[7] = 0x80;  // header length 2^63
  expect_error(huge, ErrorCode::kCorruptFile, {"header length"});
  StBytes past = safetensors_raw("{}", {});
  past[0] = 200;  // longer than the file
  expect_error(past, ErrorCode::kCorruptFile, {"past the end"});
  expect_error(safetensors_raw("{\"w\": {", {}), ErrorCode::kCorruptFile, {"not valid JSON"});
  expect_error(safetensors_raw("[1, 2]", {}), ErrorCode::kCorruptFile, {"not a JSON object"});
  expect_error(safetensors_raw("", {}), ErrorCode::kCorruptFile, {"not valid JSON"});
  const StBytes d16(16);
  auto one = [&](const std::string& entry) {
    return safetensors_raw("{\"w\": " + entry + "}", d16);
  };
  expect_error(one("3"), ErrorCode::kCorruptFile, {"'w'", "not a JSON object"});
  expect_error(one(R"({"shape":[4],"data_offsets":[0,16]})"), ErrorCode::kCorruptFile,
               {"'w'", "dtype"});
  expect_error(one(R"({"dtype":5,"shape":[4],"data_offsets":[0,16]})"), ErrorCode::kCorruptFile,
               {"'w'", "dtype"});
  expect_error(one(R"({"dtype":"F32","data_offsets":[0,16]})"), ErrorCode::kCorruptFile, {"shape"});
  expect_error(one(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})"),
               ErrorCode::kCorruptFile, {"dimension -4"});
  expect_error(one(R"({"dtype":"F32","shape":[4.5],"data_offsets":[0,16]})"),
               ErrorCode::kCorruptFile, {"dimension"});
  expect_error(one(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]})"),
               ErrorCode::kCorruptFile, {"overflows"});
  expect_error(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"), ErrorCode::kCorruptFile,
               {"data_offsets"});
  expect_error(one(R"({"dtype":"F32","shape":[4],"data_offsets":[8,0]})"), ErrorCode::kCorruptFile,
               {"data_offsets"});
  expect_error(one(R"({"dtype":"F32","shape":[4],"data_offsets":[16,32]})"),
               ErrorCode::kCorruptFile, {"'w'", "16-byte data section"});
  expect_error(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551615]})"),
               ErrorCode::kCorruptFile, {"'w'"});
  expect_error(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), ErrorCode::kCorruptFile,
               {"16 bytes of data for 3 elements"});
  expect_error(one(R"({"dtype":"I64","shape":[4],"data_offsets":[0,16]})"), ErrorCode::kCorruptFile,
               {"I64"});
  expect_error(safetensors_raw(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},
                                  "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                               d16),
               ErrorCode::kCorruptFile, {"overlaps"});
  // A zero-sized tensor inside another's range does not hide a real overlap behind it.
  expect_error(safetensors_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                  "z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},
                                  "b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})",
                               d16),
               ErrorCode::kCorruptFile, {"overlaps"});
  EXPECT_NO_THROW(SafetensorsFile::parse(safetensors_raw(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
          "z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},
          "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
      d16)));
}

TEST(Safetensors, TruncatedAtEveryByte) {
  const StBytes full = make_safetensors(sample_tensors(9));
  SafetensorsFile::parse(full);
  for (size_t n = 0; n < full.size(); ++n) {
    StBytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(SafetensorsFile::parse(cut), Error) << "cut at " << n;
  }
}

TEST(Safetensors, RandomBitFlipsParseOrThrowError) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const StBytes base = make_safetensors(sample_tensors(seed));
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    StBytes b = base;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i)
      b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const SafetensorsFile f = SafetensorsFile::parse(b);
      ++parsed;
      for (const auto& info : f.tensors()) {
        try {
          const Tensor t = f.tensor(info.name);
          if (t.nbytes() > 0) (void)static_cast<const volatile uint8_t*>(t.data())[t.nbytes() - 1];
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
        }
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace tessera::model

#else

TEST(Safetensors, NeedsJson) {
  EXPECT_THROW(tessera::model::SafetensorsFile::parse(std::vector<uint8_t>(16)), tessera::Error);
}

#endif  // TESSERA_HAVE_JSON
