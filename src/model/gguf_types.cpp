// ggml type geometry and names, and the GgufValue accessors. The table lists every type id ggml
// has defined (including removed ones that old files may still hold) so that such files parse even
// when Tessera cannot compute with their tensors.
#include <cstdint>
#include <limits>
#include <string>

#include "tessera/core/error.h"
#include "tessera/model/gguf.h"

namespace tessera::model {

namespace {

constexpr uint32_t kQK_K = 256;

// Indexed by ggml type id; name == nullptr marks a hole (ids 4 and 5 were never reused).
// Sizes follow ggml-common.h (Q8_1 is 36 bytes there; older gguf-py tables say 40).
constexpr GgmlTypeInfo kTypes[] = {
    {"f32", 1, 4},           // 0
    {"f16", 1, 2},           // 1
    {"q4_0", 32, 18},        // 2
    {"q4_1", 32, 20},        // 3
    {nullptr, 0, 0},         // 4 (removed Q4_2)
    {nullptr, 0, 0},         // 5 (removed Q4_3)
    {"q5_0", 32, 22},        // 6
    {"q5_1", 32, 24},        // 7
    {"q8_0", 32, 34},        // 8
    {"q8_1", 32, 36},        // 9
    {"q2_K", kQK_K, 84},     // 10
    {"q3_K", kQK_K, 110},    // 11
    {"q4_K", kQK_K, 144},    // 12
    {"q5_K", kQK_K, 176},    // 13
    {"q6_K", kQK_K, 210},    // 14
    {"q8_K", kQK_K, 292},    // 15
    {"iq2_xxs", kQK_K, 66},  // 16
    {"iq2_xs", kQK_K, 74},   // 17
    {"iq3_xxs", kQK_K, 98},  // 18
    {"iq1_s", kQK_K, 50},    // 19
    {"iq4_nl", 32, 18},      // 20
    {"iq3_s", kQK_K, 110},   // 21
    {"iq2_s", kQK_K, 82},    // 22
    {"iq4_xs", kQK_K, 136},  // 23
    {"i8", 1, 1},            // 24
    {"i16", 1, 2},           // 25
    {"i32", 1, 4},           // 26
    {"i64", 1, 8},           // 27
    {"f64", 1, 8},           // 28
    {"iq1_m", kQK_K, 56},    // 29
    {"bf16", 1, 2},          // 30
    {"q4_0_4_4", 32, 18},    // 31 (removed; repacked Q4_0)
    {"q4_0_4_8", 32, 18},    // 32 (removed)
    {"q4_0_8_8", 32, 18},    // 33 (removed)
    {"tq1_0", kQK_K, 54},    // 34
    {"tq2_0", kQK_K, 66},    // 35
    {"iq4_nl_4_4", 32, 18},  // 36 (removed; repacked IQ4_NL)
    {"iq4_nl_4_8", 32, 18},  // 37 (removed)
    {"iq4_nl_8_8", 32, 18},  // 38 (removed)
    {"mxfp4", 32, 17},       // 39
    {"nvfp4", 64, 36},       // 40
    {"q1_0", 128, 18},       // 41
};

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  if (type >= std::size(kTypes) || kTypes[type].name == nullptr) return nullptr;
  return &kTypes[type];
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  return info ? std::string(info->name) : "type " + std::to_string(type);
}

std::optional<DType> dtype_from_ggml(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      return DType::kF32;
    case GgmlType::kF16:
      return DType::kF16;
    case GgmlType::kBF16:
      return DType::kBF16;
    case GgmlType::kQ8_0:
      return DType::kQ8_0;
    case GgmlType::kQ4_0:
      return DType::kQ4_0;
    case GgmlType::kQ4_1:
      return DType::kQ4_1;
    case GgmlType::kQ5_0:
      return DType::kQ5_0;
    case GgmlType::kQ5_1:
      return DType::kQ5_1;
    case GgmlType::kQ2_K:
      return DType::kQ2_K;
    case GgmlType::kQ3_K:
      return DType::kQ3_K;
    case GgmlType::kQ4_K:
      return DType::kQ4_K;
    case GgmlType::kQ5_K:
      return DType::kQ5_K;
    case GgmlType::kQ6_K:
      return DType::kQ6_K;
    default:
      break;
  }
  if (type == 26) return DType::kI32;  // ggml I32 has the same layout as DType::kI32.
  return std::nullopt;
}

// ---- GgufValue ----

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(value) || std::holds_alternative<int64_t>(value);
}

bool GgufValue::is_number() const { return is_integer() || std::holds_alternative<double>(value); }

int64_t GgufValue::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(ErrorCode::kOutOfRange, "GGUF value ", *u, " does not fit in int64");
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  if (const auto* b = std::get_if<bool>(&value)) return *b ? 1 : 0;
  fail(ErrorCode::kInvalidArgument, "GGUF value is not an integer");
}

double GgufValue::as_double() const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  fail(ErrorCode::kInvalidArgument, "GGUF value is not a number");
}

bool GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  fail(ErrorCode::kInvalidArgument, "GGUF value is not a bool");
}

const std::string& GgufValue::as_string() const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  fail(ErrorCode::kInvalidArgument, "GGUF value is not a string");
}

const GgufValue::Array& GgufValue::as_array() const {
  if (const auto* a = std::get_if<Array>(&value)) return *a;
  fail(ErrorCode::kInvalidArgument, "GGUF value is not an array");
}

// ---- GgufTensorInfo ----

std::vector<int64_t> GgufTensorInfo::shape() const { return {dims.rbegin(), dims.rend()}; }

}  // namespace tessera::model
