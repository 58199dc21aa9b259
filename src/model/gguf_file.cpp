// GgufFile lookups: typed metadata getters and tensors borrowing the mapping. Parsing lives in
// gguf.cpp; by the time these run every tensor's bytes are known to lie inside the file.
#include "tessera/core/error.h"
#include "tessera/model/gguf.h"

namespace tessera::model {

namespace {

const char* value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const GgufValue& v,
                             const char* wanted) {
  fail(ErrorCode::kInvalidArgument, "GGUF key '", key, "' in ", path, " is a ",
       value_type_name(v.type), ", not ", wanted);
}

}  // namespace

const GgufValue* GgufFile::find(std::string_view key) const {
  // std::map<std::string, ...> has no heterogeneous lookup (std::less<std::string>).
  auto it = metadata_.find(std::string(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
const GgufValue& require(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  if (!v) fail(ErrorCode::kNotFound, "GGUF key '", key, "' not found in ", f.path());
  return *v;
}
}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kString) wrong_type(path_, key, v, "a string");
  return v.as_string();
}

std::string GgufFile::get_string(std::string_view key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_type(path_, key, v, "an integer");
  return v.as_int();
}

int64_t GgufFile::get_int(std::string_view key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_number()) wrong_type(path_, key, v, "a number");
  return v.as_double();
}

double GgufFile::get_float(std::string_view key, double def) const {
  return has(key) ? get_float(key) : def;
}

bool GgufFile::get_bool(std::string_view key, bool def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type != GgufValueType::kBool) wrong_type(path_, key, *v, "a bool");
  return v->as_bool();
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kArray) wrong_type(path_, key, v, "an array of strings");
  const auto& arr = v.as_array();
  if (arr.elem_type != GgufValueType::kString) wrong_type(path_, key, v, "an array of strings");
  std::vector<std::string> out;
  out.reserve(arr.items.size());
  for (const GgufValue& item : arr.items) out.push_back(item.as_string());
  return out;
}

std::vector<double> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kArray) wrong_type(path_, key, v, "an array of numbers");
  std::vector<double> out;
  out.reserve(v.as_array().items.size());
  for (const GgufValue& item : v.as_array().items) {
    if (!item.is_number()) wrong_type(path_, key, v, "an array of numbers");
    out.push_back(item.as_double());
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kArray) wrong_type(path_, key, v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v.as_array().items.size());
  for (const GgufValue& item : v.as_array().items) {
    if (!item.is_integer()) wrong_type(path_, key, v, "an array of integers");
    out.push_back(item.as_int());
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* info = find_tensor(name);
  if (!info) fail(ErrorCode::kNotFound, "tensor '", name, "' not found in ", path_);
  const std::optional<DType> dtype = dtype_from_ggml(info->ggml_type);
  if (!dtype)
    fail(ErrorCode::kUnsupported, "tensor '", name, "' in ", path_, " has ggml type ",
         ggml_type_name(info->ggml_type), ", which Tessera cannot compute with");
  const uint8_t* data = base_ + data_offset_ + info->offset;
  auto storage = Storage::borrow(data, static_cast<size_t>(info->nbytes), owner_);
  return Tensor::from_storage(std::move(storage), 0, info->shape(), *dtype);
}

}  // namespace tessera::model
