// GGUF v2/v3 parsing. Every read goes through Reader, which checks the bytes exist before touching
// them; every count is bounded by the bytes left in the file before anything is reserved, so a
// corrupt or hostile file raises Error(kCorruptFile) naming the key or tensor and the byte offset
// instead of reading out of bounds or allocating absurd amounts of memory.
#include "tessera/model/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>

#include "tessera/core/error.h"

namespace tessera::model {

static_assert(std::endian::native == std::endian::little,
              "GGUF reader assumes a little-endian host");

namespace {

constexpr uint64_t kMaxKeyLength = 65535;  // gguf.md: keys are at most 65535 bytes
constexpr uint64_t kMaxTensorName = 63;    // GGML_MAX_NAME = 64 including the NUL
constexpr uint32_t kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;          // nested arrays are legal but never deep in practice
// All array elements in the metadata together; a real vocabulary has a few hundred thousand.
// Bounds the in-memory size (~48 bytes per GgufValue) of a hostile file full of uint8 arrays.
constexpr uint64_t kMaxMetadataElements = uint64_t{1} << 23;

// Bytes a value of `type` takes at least (strings and arrays: their length/count prefix).
// 0 for an unknown type.
uint64_t min_value_bytes(uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:
      return 8;
    case GgufValueType::kArray:
      return 12;
  }
  return 0;
}

class Reader {
 public:
  Reader(const uint8_t* base, size_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }

  template <typename... Args>
  [[noreturn]] void corrupt(size_t at, Args&&... args) const {
    fail(ErrorCode::kCorruptFile, "corrupt GGUF file ", path_, ": ", context_,
         context_.empty() ? "" : ": ", std::forward<Args>(args)..., " (at byte offset ", at, ")");
  }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T))
      corrupt(pos_, "file ends while reading ", what, " (", sizeof(T), " bytes needed, ",
              remaining(), " left)");
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // A uint64 length-prefixed string of at most `max_len` bytes.
  std::string read_string(const char* what, uint64_t max_len) {
    const size_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > max_len) corrupt(at, what, " length ", len, " exceeds the limit of ", max_len);
    if (len > remaining())
      corrupt(at, what, " length ", len, " runs past the end of the file (", remaining(),
              " bytes left)");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  uint64_t metadata_elements = 0;

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  std::string context_;
};

GgufValue read_value(Reader& r, uint32_t type, int depth);

GgufValue read_array(Reader& r, int depth) {
  const size_t at = r.pos();
  if (depth >= kMaxArrayDepth)
    r.corrupt(at, "arrays nested deeper than ", kMaxArrayDepth, " levels");
  const uint32_t elem_type = r.read<uint32_t>("array element type");
  const uint64_t min_bytes = min_value_bytes(elem_type);
  if (min_bytes == 0) r.corrupt(at, "unknown array element type ", elem_type);
  const uint64_t count = r.read<uint64_t>("array length");
  if (count > r.remaining() / min_bytes)
    r.corrupt(at, "array of ", count, " elements does not fit in the ", r.remaining(),
              " bytes left");
  r.metadata_elements += count;
  if (r.metadata_elements > kMaxMetadataElements)
    r.corrupt(at, "metadata holds more than ", kMaxMetadataElements, " array elements");
  GgufValue::Array arr{static_cast<GgufValueType>(elem_type), {}};
  arr.items.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) arr.items.push_back(read_value(r, elem_type, depth + 1));
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.value = std::move(arr);
  return v;
}

GgufValue read_value(Reader& r, uint32_t type, int depth) {
  GgufValue v;
  v.type = static_cast<GgufValueType>(type);
  switch (v.type) {
    case GgufValueType::kUint8:
      v.value = uint64_t{r.read<uint8_t>("uint8 value")};
      break;
    case GgufValueType::kInt8:
      v.value = int64_t{r.read<int8_t>("int8 value")};
      break;
    case GgufValueType::kUint16:
      v.value = uint64_t{r.read<uint16_t>("uint16 value")};
      break;
    case GgufValueType::kInt16:
      v.value = int64_t{r.read<int16_t>("int16 value")};
      break;
    case GgufValueType::kUint32:
      v.value = uint64_t{r.read<uint32_t>("uint32 value")};
      break;
    case GgufValueType::kInt32:
      v.value = int64_t{r.read<int32_t>("int32 value")};
      break;
    case GgufValueType::kUint64:
      v.value = r.read<uint64_t>("uint64 value");
      break;
    case GgufValueType::kInt64:
      v.value = r.read<int64_t>("int64 value");
      break;
    case GgufValueType::kFloat32:
      v.value = double{r.read<float>("float32 value")};
      break;
    case GgufValueType::kFloat64:
      v.value = r.read<double>("float64 value");
      break;
    case GgufValueType::kBool: {
      const size_t at = r.pos();
      const uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) r.corrupt(at, "bool value ", int{b}, " is neither 0 nor 1");
      v.value = b == 1;
      break;
    }
    case GgufValueType::kString:
      v.value = r.read_string("string value", std::numeric_limits<uint64_t>::max());
      break;
    case GgufValueType::kArray:
      return read_array(r, depth);
    default:
      r.corrupt(r.pos() - 4, "unknown value type ", type);
  }
  return v;
}

uint64_t checked_mul(Reader& r, size_t at, uint64_t a, uint64_t b, const char* what) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) r.corrupt(at, what, " overflows 64 bits");
  return out;
}

GgufTensorInfo read_tensor_info(Reader& r, uint64_t index) {
  GgufTensorInfo t;
  const size_t at = r.pos();
  r.set_context("tensor #" + std::to_string(index));
  t.name = r.read_string("tensor name", kMaxTensorName);
  if (t.name.empty()) r.corrupt(at, "empty tensor name");
  r.set_context("tensor '" + t.name + "'");
  const size_t dims_at = r.pos();
  const uint32_t n_dims = r.read<uint32_t>("n_dims");
  if (n_dims > kMaxDims) r.corrupt(dims_at, "n_dims ", n_dims, " exceeds ", kMaxDims);
  uint64_t numel = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    const size_t dim_at = r.pos();
    const int64_t d = r.read<int64_t>("dimension");
    if (d < 0) r.corrupt(dim_at, "negative dimension ", d);
    numel = checked_mul(r, dim_at, numel, static_cast<uint64_t>(d), "element count");
    if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      r.corrupt(dim_at, "element count overflows int64");
    t.dims.push_back(d);
  }
  const size_t type_at = r.pos();
  t.ggml_type = r.read<uint32_t>("ggml type");
  const GgmlTypeInfo* info = ggml_type_info(t.ggml_type);
  if (!info)
    fail(ErrorCode::kUnsupported, "GGUF tensor '", t.name, "' has unknown ggml type ", t.ggml_type,
         " (at byte offset ", type_at, ")");
  const uint64_t ne0 = t.dims.empty() ? 1 : static_cast<uint64_t>(t.dims[0]);
  if (ne0 % info->block_elems != 0)
    r.corrupt(type_at, "innermost dimension ", ne0, " is not a multiple of the ", info->name,
              " block size ", info->block_elems);
  const uint64_t rows = ne0 == 0 ? 0 : numel / ne0;
  t.nbytes = checked_mul(
      r, type_at, checked_mul(r, type_at, ne0 / info->block_elems, info->block_bytes, "row size"),
      rows, "tensor size");
  t.offset = r.read<uint64_t>("tensor data offset");
  return t;
}

}  // namespace

void GgufFile::parse_all() {
  Reader r(base_, size_, path_);
  if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0)
    fail(ErrorCode::kCorruptFile, path_, " is not a GGUF file (no \"GGUF\" magic at byte 0)");
  r.read<uint32_t>("magic");
  r.set_context("header");
  version_ = r.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    if (version_ != 0 && (version_ & 0xFFFF) == 0)
      fail(ErrorCode::kUnsupported, "GGUF file ", path_, " is big-endian, which is not supported");
    fail(ErrorCode::kUnsupported, "GGUF file ", path_, " has version ", version_,
         "; only versions 2 and 3 are supported");
  }
  const size_t counts_at = r.pos();
  const uint64_t tensor_count = r.read<uint64_t>("tensor count");
  const uint64_t kv_count = r.read<uint64_t>("metadata key-value count");
  // Smallest possible records: a KV is key length + 1-byte key + type + 1-byte value; a tensor
  // info is name length + 1-byte name + n_dims + type + offset.
  if (kv_count > r.remaining() / 14)
    r.corrupt(counts_at + 8, "metadata count ", kv_count, " cannot fit in the ", r.remaining(),
              " bytes left");
  if (tensor_count > r.remaining() / 25)
    r.corrupt(counts_at, "tensor count ", tensor_count, " cannot fit in the ", r.remaining(),
              " bytes left");

  for (uint64_t i = 0; i < kv_count; ++i) {
    const size_t at = r.pos();
    r.set_context("metadata entry #" + std::to_string(i));
    std::string key = r.read_string("key", kMaxKeyLength);
    if (key.empty()) r.corrupt(at, "empty key");
    r.set_context("key '" + key + "'");
    const uint32_t type = r.read<uint32_t>("value type");
    GgufValue value = read_value(r, type, 0);
    if (!metadata_.emplace(key, std::move(value)).second) r.corrupt(at, "duplicate key");
  }

  r.set_context("general.alignment");
  alignment_ = 32;
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufValueType::kUint32)
      r.corrupt(r.pos(), "must be a uint32, not value type ", static_cast<uint32_t>(a->type));
    const uint64_t v = std::get<uint64_t>(a->value);
    if (v == 0 || !std::has_single_bit(v)) r.corrupt(r.pos(), v, " is not a power of two");
    alignment_ = v;
  }

  r.set_context("tensor infos");
  if (tensor_count > r.remaining() / 25)
    r.corrupt(r.pos(), "tensor count ", tensor_count, " cannot fit in the ", r.remaining(),
              " bytes left after the metadata");
  tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const size_t at = r.pos();
    GgufTensorInfo t = read_tensor_info(r, i);
    if (!tensor_index_.emplace(t.name, tensors_.size()).second)
      r.corrupt(at, "duplicate tensor name");
    tensors_.push_back(std::move(t));
  }

  r.set_context("data section");
  const uint64_t end_of_infos = r.pos();
  data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
  if (tensors_.empty()) data_offset_ = std::min<uint64_t>(data_offset_, size_);
  if (data_offset_ > size_)
    r.corrupt(end_of_infos, "data section would start at ", data_offset_, ", past the end of the ",
              size_, "-byte file");
  const uint64_t data_size = size_ - data_offset_;
  for (const GgufTensorInfo& t : tensors_) {
    r.set_context("tensor '" + t.name + "'");
    if (t.offset % alignment_ != 0)
      r.corrupt(data_offset_ + t.offset, "data offset ", t.offset,
                " is not a multiple of the alignment ", alignment_);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      r.corrupt(data_offset_, "data [", t.offset, ", +", t.nbytes,
                ") runs past the end of the data section of ", data_size, " bytes");
  }
  // No two tensors may share bytes (ggml lays them out back to back).
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = tensors_[order[i - 1]];
    const GgufTensorInfo& cur = tensors_[order[i]];
    if (prev.nbytes > 0 && cur.nbytes > 0 && prev.offset + prev.nbytes > cur.offset) {
      r.set_context("tensor '" + cur.name + "'");
      r.corrupt(data_offset_ + cur.offset, "data overlaps tensor '", prev.name, "'");
    }
  }
}

GgufFile GgufFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  GgufFile f;
  f.base_ = mapping->data();
  f.size_ = mapping->size();
  f.owner_ = std::move(mapping);
  f.path_ = path;
  try {
    f.parse_all();
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kResourceExhausted, "out of memory parsing GGUF file ", path);
  }
  return f;
}

GgufFile GgufFile::parse(std::vector<uint8_t> bytes, const std::string& name) {
  auto buffer = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  GgufFile f;
  f.base_ = buffer->data();
  f.size_ = buffer->size();
  f.owner_ = std::move(buffer);
  f.path_ = name;
  try {
    f.parse_all();
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kResourceExhausted, "out of memory parsing GGUF image ", name);
  }
  return f;
}

}  // namespace tessera::model
