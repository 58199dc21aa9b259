// GGUF v2/v3 reader over a memory mapping. Parsing checks every offset, size, count and string
// length against the file, so a truncated or corrupted file raises tessera::Error(kCorruptFile)
// naming what is wrong (key, tensor, byte offset) and never reads out of bounds. Tensor data is not
// copied: tensor() returns a Tensor borrowing the mapping. A GgufFile is immutable after open().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tessera/core/mapped_file.h"
#include "tessera/core/tensor.h"

namespace tessera::model {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// A metadata value. Arrays may nest (the spec allows it); element type is kept for round trips.
struct GgufValue {
  struct Array {
    GgufValueType elem_type;
    std::vector<GgufValue> items;
  };
  GgufValueType type = GgufValueType::kUint8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> value;

  bool is_integer() const;
  bool is_number() const;  // integer or float
  int64_t as_int() const;  // throws kInvalidArgument unless integer (or bool)
  double as_double() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;
};

// ggml tensor type ids (ggml.h).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};
// Block geometry of a ggml type: `block_elems` elements packed into `block_bytes` bytes along the
// innermost dimension. Known for every type ggml has defined, so files holding types Tessera
// cannot compute with still parse; nullptr for an unknown id.
struct GgmlTypeInfo {
  const char* name;
  uint32_t block_elems;
  uint32_t block_bytes;
};
const GgmlTypeInfo* ggml_type_info(uint32_t type);
// Name of any ggml type id ("q4_K", "type 99" when unknown) for error messages.
std::string ggml_type_name(uint32_t type);
// The DType that holds a ggml type, or nullopt when Tessera cannot compute with it.
std::optional<DType> dtype_from_ggml(uint32_t type);

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // as stored: innermost (contiguous) first, ggml's ne[0..n)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  // PyTorch-order shape (dims reversed): a [in, out] GGUF weight is [out, in] here.
  std::vector<int64_t> shape() const;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  // Parses an in-memory image (tests); the bytes are copied into an owned buffer.
  static GgufFile parse(std::vector<uint8_t> bytes, const std::string& name = "<memory>");

  uint32_t version() const { return version_; }
  const std::string& path() const { return path_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed getters: throw kNotFound naming the key when absent (the overloads with a default
  // return it instead) and kInvalidArgument when the value has another type.
  std::string get_string(std::string_view key) const;
  std::string get_string(std::string_view key, const std::string& def) const;
  int64_t get_int(std::string_view key) const;
  int64_t get_int(std::string_view key, int64_t def) const;
  double get_float(std::string_view key) const;
  double get_float(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // The named tensor as a Tensor borrowing the mapping, in PyTorch order. Throws kNotFound
  // naming the tensor, or kUnsupported naming the tensor and its ggml type.
  Tensor tensor(std::string_view name) const;

 private:
  std::shared_ptr<const void> owner_;  // MappedFile or owned buffer
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;

  void parse_all();
};

}  // namespace tessera::model
