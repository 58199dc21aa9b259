// GGUF reader on broken images: truncation at every byte, random bit flips, and each field made
// oversized or inconsistent. Each must raise tessera::Error (never crash, never another exception,
// never a huge allocation); run under -DTESSERA_SANITIZE=ON to catch out-of-bounds reads.
#include <gtest/gtest.h>

#include <random>

#include "gguf_builder.h"
#include "gguf_sample.h"
#include "tessera/core/error.h"
#include "tessera/model/gguf.h"

namespace tessera::model {
namespace {

using testing::array_payload;
using testing::Bytes;
using testing::GgufBuilder;
using testing::put;
using testing::put_str;
using testing::TensorSpec;

// Parses `bytes`, expecting an Error with `code` whose message holds every string in `parts`.
void expect_error(const Bytes& bytes, ErrorCode code, std::vector<std::string> parts = {}) {
  try {
    GgufFile::parse(bytes, "bad.gguf");
    ADD_FAILURE() << "parsed without error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << p << "' missing in: " << e.what();
  }
}

// Touches everything a consumer would, so a bad parse that slipped through shows up under ASan.
void use_everything(const GgufFile& f) {
  for (const auto& [key, value] : f.metadata()) (void)key, (void)value.type;
  for (const auto& info : f.tensors()) {
    try {
      const Tensor t = f.tensor(info.name);
      if (t.nbytes() > 0) {
        const auto* p = static_cast<const volatile uint8_t*>(t.data());
        (void)p[0];
        (void)p[t.nbytes() - 1];
      }
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
    }
  }
}

TEST(GgufCorrupt, TruncatedAtEveryByte) {
  for (uint32_t version : {2u, 3u}) {
    const Bytes full = testing::make_sample(version, version == 2 ? 32 : 8, 11).bytes;
    GgufFile::parse(full);  // the whole image is fine
    for (size_t n = 0; n < full.size(); ++n) {
      Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_THROW(GgufFile::parse(cut), Error) << "cut at " << n << " of " << full.size();
    }
  }
}

TEST(GgufCorrupt, RandomBitFlipsParseOrThrowError) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const Bytes base = testing::make_sample(3, 32, seed).bytes;
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Bytes b = base;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < flips; ++i) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      use_everything(GgufFile::parse(b));
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    }
    // Any other exception type escapes and fails the test.
  }
  EXPECT_GT(parsed, 0);    // flips inside tensor data are harmless
  EXPECT_GT(rejected, 0);  // flips in the header are caught
}

Bytes header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
  Bytes b = {'G', 'G', 'U', 'F'};
  put<uint32_t>(b, version);
  put<uint64_t>(b, tensors);
  put<uint64_t>(b, kvs);
  return b;
}

TEST(GgufCorrupt, MagicVersionAndHeader) {
  expect_error({}, ErrorCode::kCorruptFile, {"not a GGUF file"});
  expect_error({'G', 'G', 'U'}, ErrorCode::kCorruptFile);
  expect_error({'G', 'G', 'M', 'L', 3, 0, 0, 0}, ErrorCode::kCorruptFile, {"magic"});
  expect_error(header(0, 0, 1), ErrorCode::kUnsupported, {"version 1"});
  expect_error(header(0, 0, 4), ErrorCode::kUnsupported, {"version 4"});
  expect_error(header(0, 0, 0x03000000), ErrorCode::kUnsupported, {"big-endian"});
  EXPECT_EQ(GgufFile::parse(header(0, 0, 2)).version(), 2u);  // empty but valid
}

TEST(GgufCorrupt, HugeCounts) {
  expect_error(header(uint64_t{1} << 60, 0), ErrorCode::kCorruptFile, {"tensor count", "offset 8"});
  expect_error(header(0, uint64_t{1} << 60), ErrorCode::kCorruptFile, {"metadata count"});
  expect_error(header(~uint64_t{0}, ~uint64_t{0}), ErrorCode::kCorruptFile);
  // Key length 2^62.
  Bytes b = header(0, 1);
  put<uint64_t>(b, uint64_t{1} << 62);
  b.insert(b.end(), 40, 'k');
  expect_error(b, ErrorCode::kCorruptFile, {"key length", "offset 24"});
  // Key length within limits but past the end of the file.
  b = header(0, 1);
  put<uint64_t>(b, 1000);
  b.insert(b.end(), 40, 'k');
  expect_error(b, ErrorCode::kCorruptFile, {"end of the file"});
}

TEST(GgufCorrupt, HugeValueLengths) {
  {
    Bytes p;
    put<uint64_t>(p, uint64_t{1} << 62);
    p.insert(p.end(), {'a', 'b', 'c'});
    expect_error(GgufBuilder().kv("my.string", GgufValueType::kString, p).build(),
                 ErrorCode::kCorruptFile, {"my.string", "string value length"});
  }
  for (auto elem : {GgufValueType::kUint8, GgufValueType::kString, GgufValueType::kArray,
                    GgufValueType::kFloat64}) {
    expect_error(GgufBuilder()
                     .kv("my.array", GgufValueType::kArray,
                         array_payload(elem, uint64_t{1} << 50, Bytes(64, 0)))
                     .build(),
                 ErrorCode::kCorruptFile, {"my.array", "array of"});
  }
  // Array of strings whose second string is too long.
  Bytes e;
  put_str(e, "ok");
  put<uint64_t>(e, uint64_t{1} << 40);
  expect_error(GgufBuilder()
                   .kv("tok", GgufValueType::kArray, array_payload(GgufValueType::kString, 2, e))
                   .build(),
               ErrorCode::kCorruptFile, {"tok"});
}

TEST(GgufCorrupt, NestingDepthIsLimited) {
  auto nested = [](int depth) {
    Bytes p = array_payload(GgufValueType::kUint8, 1, {7});
    for (int i = 1; i < depth; ++i) p = array_payload(GgufValueType::kArray, 1, p);
    return GgufBuilder().kv("deep", GgufValueType::kArray, p).build();
  };
  EXPECT_EQ(GgufFile::parse(nested(4)).find("deep")->as_array().items.size(), 1u);
  expect_error(nested(200), ErrorCode::kCorruptFile, {"deep", "nested"});
}

TEST(GgufCorrupt, BadValues) {
  expect_error(GgufBuilder().scalar<uint8_t>("flag", GgufValueType::kBool, 2).build(),
               ErrorCode::kCorruptFile, {"flag", "bool"});
  expect_error(GgufBuilder().kv("odd", static_cast<GgufValueType>(13), Bytes(8, 0)).build(),
               ErrorCode::kCorruptFile, {"odd", "unknown value type 13"});
  expect_error(GgufBuilder()
                   .kv("odd", GgufValueType::kArray,
                       array_payload(static_cast<GgufValueType>(77), 1, Bytes(8, 0)))
                   .build(),
               ErrorCode::kCorruptFile, {"odd", "element type 77"});
  expect_error(GgufBuilder().str("dup", "a").str("dup", "b").build(), ErrorCode::kCorruptFile,
               {"dup", "duplicate"});
  expect_error(GgufBuilder().str("", "a").build(), ErrorCode::kCorruptFile, {"empty key"});
  Bytes long_key(70000, 'x');
  expect_error(GgufBuilder()
                   .str(std::string_view(reinterpret_cast<char*>(long_key.data()), 70000), "a")
                   .build(),
               ErrorCode::kCorruptFile, {"key length"});
}

TEST(GgufCorrupt, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    expect_error(
        GgufBuilder().scalar<uint32_t>("general.alignment", GgufValueType::kUint32, a).build(),
        ErrorCode::kCorruptFile, {"general.alignment", "power of two"});
  }
  expect_error(
      GgufBuilder().scalar<uint64_t>("general.alignment", GgufValueType::kUint64, 32).build(),
      ErrorCode::kCorruptFile, {"general.alignment", "uint32"});
}

Bytes with_tensor(TensorSpec t, uint64_t alignment = 32) {
  GgufBuilder g;
  g.alignment = alignment;
  g.tensor(std::move(t));
  return g.build();
}

TEST(GgufCorrupt, BadTensorInfos) {
  EXPECT_NO_THROW(GgufFile::parse(with_tensor({"ok", {8, 2}, 0, Bytes(64, 1), {}})));
  expect_error(with_tensor({"five", {1, 1, 1, 1, 1}, 0, Bytes(4), {}}), ErrorCode::kCorruptFile,
               {"five", "n_dims 5"});
  expect_error(with_tensor({"neg", {~uint64_t{0}}, 0, Bytes(4), {}}), ErrorCode::kCorruptFile,
               {"neg", "negative"});
  expect_error(with_tensor({"big", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, Bytes(4), {}}),
               ErrorCode::kCorruptFile, {"big", "overflow"});
  expect_error(with_tensor({"big2", {uint64_t{1} << 62, 1}, 0, Bytes(4), {}}),
               ErrorCode::kCorruptFile, {"big2"});
  expect_error(with_tensor({"blocks", {33, 1}, 8, Bytes(34), {}}), ErrorCode::kCorruptFile,
               {"blocks", "block size 32"});
  expect_error(with_tensor({"unknown", {4}, 99, Bytes(16), {}}), ErrorCode::kUnsupported,
               {"unknown", "99"});
  expect_error(with_tensor({"", {4}, 0, Bytes(16), {}}), ErrorCode::kCorruptFile,
               {"empty tensor name"});
  expect_error(with_tensor({std::string(64, 'n'), {4}, 0, Bytes(16), {}}), ErrorCode::kCorruptFile,
               {"tensor name length 64"});
  // Data placement.
  expect_error(with_tensor({"misaligned", {4}, 0, Bytes(16), 4}), ErrorCode::kCorruptFile,
               {"misaligned", "alignment 32"});
  expect_error(with_tensor({"far", {4}, 0, Bytes(16), uint64_t{1} << 40}), ErrorCode::kCorruptFile,
               {"far", "past the end"});
  expect_error(with_tensor({"wrap", {4}, 0, Bytes(16), ~uint64_t{0} - 31}), ErrorCode::kCorruptFile,
               {"wrap"});
  expect_error(with_tensor({"short", {8}, 0, Bytes(16), {}}), ErrorCode::kCorruptFile,
               {"short", "past the end"});
  {
    GgufBuilder g;
    g.tensor({"a", {8}, 0, Bytes(32, 1), {}}).tensor({"b", {8}, 0, Bytes(32, 2), 0});
    expect_error(g.build(), ErrorCode::kCorruptFile, {"overlaps"});
  }
  {
    GgufBuilder g;
    g.tensor({"same", {8}, 0, Bytes(32), {}}).tensor({"same", {8}, 0, Bytes(32), {}});
    expect_error(g.build(), ErrorCode::kCorruptFile, {"same", "duplicate tensor name"});
  }
  {  // Tensor count larger than the infos present.
    GgufBuilder g;
    g.tensor_count_override = 3;
    g.tensor({"one", {8}, 0, Bytes(32), {}});
    expect_error(g.build(), ErrorCode::kCorruptFile);
  }
}

TEST(GgufCorrupt, ZeroSizedTensorsAreFine) {
  GgufBuilder g;
  g.tensor({"empty", {0, 4}, 0, {}, {}}).tensor({"scalar", {}, 0, Bytes(4, 9), {}});
  const GgufFile f = GgufFile::parse(g.build());
  EXPECT_EQ(f.tensor("empty").numel(), 0);
  EXPECT_EQ(f.tensor("scalar").numel(), 1);
  EXPECT_EQ(f.find_tensor("scalar")->nbytes, 4u);
}

}  // namespace
}  // namespace tessera::model
