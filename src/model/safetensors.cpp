// Safetensors parsing: the header length and every tensor's byte range are checked against the
// file, each other and the tensor's dtype and shape before any tensor is handed out.
#include "tessera/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "tessera/core/error.h"
#include "tessera/core/mapped_file.h"

#if TESSERA_HAVE_JSON
#include <nlohmann/json.hpp>

#include "tessera/json/bounded_json.h"
#endif

namespace tessera::model {

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before parsing JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeEntry {
  const char* name;
  uint64_t bytes;              // per element
  std::optional<DType> dtype;  // what Tessera computes with
};

constexpr DtypeEntry kDtypes[] = {
    {"F32", 4, DType::kF32},      {"F16", 2, DType::kF16},      {"BF16", 2, DType::kBF16},
    {"I32", 4, DType::kI32},      {"F64", 8, std::nullopt},     {"I64", 8, std::nullopt},
    {"U64", 8, std::nullopt},     {"U32", 4, std::nullopt},     {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},     {"I8", 1, std::nullopt},      {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},    {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"F8_E8M0", 1, std::nullopt},
};

[[maybe_unused]] const DtypeEntry* find_dtype(std::string_view name) {
  for (const DtypeEntry& e : kDtypes)
    if (name == e.name) return &e;
  return nullptr;
}

}  // namespace

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> SafetensorsFile::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, i] : index_) names.push_back(name);  // std::map: already sorted
  return names;
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const SafetensorsTensorInfo* info = find(name);
  if (!info) fail(ErrorCode::kNotFound, "tensor '", name, "' not found in ", path_);
  if (!info->dtype)
    fail(ErrorCode::kUnsupported, "tensor '", name, "' in ", path_, " has dtype ", info->dtype_name,
         ", which Tessera cannot compute with");
  const uint8_t* data = base_ + data_offset_ + info->begin;
  auto storage = Storage::borrow(data, static_cast<size_t>(info->end - info->begin), owner_);
  return Tensor::from_storage(std::move(storage), 0, info->shape, *info->dtype);
}

#if TESSERA_HAVE_JSON

namespace {

template <typename... Args>
[[noreturn]] void corrupt(const std::string& path, Args&&... args) {
  fail(ErrorCode::kCorruptFile, "corrupt safetensors file ", path, ": ",
       std::forward<Args>(args)...);
}

SafetensorsTensorInfo parse_entry(const std::string& path, const std::string& name,
                                  const nlohmann::json& j, uint64_t data_size) {
  SafetensorsTensorInfo t;
  t.name = name;
  if (name.empty()) corrupt(path, "empty tensor name");
  if (!j.is_object()) corrupt(path, "tensor '", name, "': entry is not a JSON object");
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = j.find(key);
    if (it == j.end()) corrupt(path, "tensor '", name, "': no \"", key, "\"");
    return *it;
  };
  const nlohmann::json& dtype = field("dtype");
  if (!dtype.is_string()) corrupt(path, "tensor '", name, "': \"dtype\" is not a string");
  t.dtype_name = dtype.get<std::string>();
  const nlohmann::json& shape = field("shape");
  if (!shape.is_array() || shape.size() > 8)
    corrupt(path, "tensor '", name, "': \"shape\" is not an array of at most 8 dimensions");
  uint64_t numel = 1;
  for (const nlohmann::json& d : shape) {
    if (!d.is_number_unsigned())
      corrupt(path, "tensor '", name, "': dimension ", d.dump(), " is not a non-negative integer");
    const uint64_t v = d.get<uint64_t>();
    if (__builtin_mul_overflow(numel, v, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      corrupt(path, "tensor '", name, "': element count overflows");
    t.shape.push_back(static_cast<int64_t>(v));
  }
  const nlohmann::json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    corrupt(path, "tensor '", name, "': \"data_offsets\" is not [begin, end]");
  t.begin = offsets[0].get<uint64_t>();
  t.end = offsets[1].get<uint64_t>();
  if (t.begin > t.end || t.end > data_size)
    corrupt(path, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
            "] are not an ordered range inside the ", data_size, "-byte data section");
  if (const DtypeEntry* e = find_dtype(t.dtype_name)) {
    t.dtype = e->dtype;
    uint64_t want = 0;
    if (__builtin_mul_overflow(numel, e->bytes, &want) || want != t.end - t.begin)
      corrupt(path, "tensor '", name, "': ", t.end - t.begin, " bytes of data for ", numel,
              " elements of ", t.dtype_name);
  }
  // Unknown dtypes (newer sub-byte formats) keep their range checks; tensor() refuses them.
  return t;
}

}  // namespace

void SafetensorsFile::parse_all() {
  if (size_ < 8) corrupt(path_, "file is ", size_, " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, base_, 8);
  if (header_len > kMaxHeaderBytes)
    corrupt(path_, "header length ", header_len, " exceeds the ", kMaxHeaderBytes, "-byte limit");
  if (header_len > size_ - 8)
    corrupt(path_, "header length ", header_len, " runs past the end of the ", size_, "-byte file");
  data_offset_ = 8 + header_len;
  const uint64_t data_size = size_ - data_offset_;
  const char* text = reinterpret_cast<const char*>(base_ + 8);
  nlohmann::json header;
  try {
    header = json::parse(std::string_view(text, header_len), json::kModelFileLimits, "header");
  } catch (const Error& e) {
    corrupt(path_, e.what());  // "header is not valid JSON at byte ..." or a limit
  }
  if (!header.is_object()) corrupt(path_, "header is not a JSON object");
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_object())
        for (const auto& [k, v] : value.items())
          if (v.is_string()) metadata_.emplace(k, v.get<std::string>());
      continue;
    }
    tensors_.push_back(parse_entry(path_, key, value, data_size));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Sorted by begin, a non-empty tensor overlaps an earlier one iff it starts before the furthest
  // end seen so far among the non-empty ones.
  const SafetensorsTensorInfo* furthest = nullptr;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const SafetensorsTensorInfo& t = tensors_[i];
    if (t.end > t.begin) {
      if (furthest && furthest->end > t.begin)
        corrupt(path_, "tensor '", t.name, "' overlaps tensor '", furthest->name, "'");
      if (!furthest || t.end > furthest->end) furthest = &t;
    }
    // JSON objects cannot hold duplicate keys after parsing, so names are unique already.
    index_.emplace(tensors_[i].name, i);
  }
}

#else

void SafetensorsFile::parse_all() {
  fail(ErrorCode::kUnsupported, "cannot read ", path_,
       ": Tessera was built without nlohmann_json, which safetensors headers need");
}

#endif  // TESSERA_HAVE_JSON

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  SafetensorsFile f;
  f.base_ = mapping->data();
  f.size_ = mapping->size();
  f.owner_ = std::move(mapping);
  f.path_ = path;
  try {
    f.parse_all();
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kResourceExhausted, "out of memory parsing ", path);
  }
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string& name) {
  auto buffer = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  SafetensorsFile f;
  f.base_ = buffer->data();
  f.size_ = buffer->size();
  f.owner_ = std::move(buffer);
  f.path_ = name;
  try {
    f.parse_all();
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kResourceExhausted, "out of memory parsing ", name);
  }
  return f;
}

}  // namespace tessera::model
