// Safetensors reader over a memory mapping: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and [begin, end) byte range, then the raw data. Every range is
// checked against the file and against the others at open(), so a corrupt file raises
// Error(kCorruptFile) naming the tensor. Tensors borrow the mapping (no copies). Immutable after
// open(). The JSON parsing needs nlohmann_json (TESSERA_HAVE_JSON); without it open() throws
// kUnsupported.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::model {

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype_name;      // as written: "F32", "BF16", "I64", ...
  std::optional<DType> dtype;  // nullopt when Tessera cannot compute with it
  Shape shape;                 // PyTorch order
  uint64_t begin = 0;          // byte range relative to the data section (after the header)
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  // Parses an in-memory image (tests); the bytes are copied into an owned buffer.
  static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  // Byte offset of the data section (8 + header length).
  uint64_t data_offset() const { return data_offset_; }
  // The string entries of "__metadata__" (Tessera does not interpret them).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // In file order of their data.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find(std::string_view name) const;
  bool has(std::string_view name) const { return find(name) != nullptr; }
  std::vector<std::string> tensor_names() const;  // sorted
  // The named tensor borrowing the mapping. Throws kNotFound naming it, or kUnsupported naming
  // it and its dtype when that is not F32/F16/BF16/I32.
  Tensor tensor(std::string_view name) const;

 private:
  std::shared_ptr<const void> owner_;  // MappedFile or owned buffer
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;

  void parse_all();
};

}  // namespace tessera::model
