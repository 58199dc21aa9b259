// Test helper: writes GGUF images in memory, field by field, so tests can build valid files and
// files broken in exactly one place. Owned by the model tests only.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/model/gguf.h"

namespace tessera::model::testing {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
inline void put_bytes(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }
inline void put_str(Bytes& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// The payload of an ARRAY value: element type, count, then the already-encoded elements.
inline Bytes array_payload(GgufValueType elem, uint64_t count, const Bytes& elems) {
  Bytes b;
  put<uint32_t>(b, static_cast<uint32_t>(elem));
  put<uint64_t>(b, count);
  put_bytes(b, elems);
  return b;
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order
  uint32_t type = 0;
  Bytes data;
  std::optional<uint64_t> offset;  // default: packed at the next aligned offset
};

class GgufBuilder {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // layout only; add the general.alignment key yourself
  std::optional<uint64_t> tensor_count_override;
  std::optional<uint64_t> kv_count_override;

  // A key with an already-encoded value payload.
  GgufBuilder& kv(std::string_view key, GgufValueType type, const Bytes& payload) {
    put_str(kvs_, key);
    put<uint32_t>(kvs_, static_cast<uint32_t>(type));
    put_bytes(kvs_, payload);
    ++n_kv_;
    return *this;
  }
  template <typename T>
  GgufBuilder& scalar(std::string_view key, GgufValueType type, T v) {
    Bytes p;
    put<T>(p, v);
    return kv(key, type, p);
  }
  GgufBuilder& str(std::string_view key, std::string_view v) {
    Bytes p;
    put_str(p, v);
    return kv(key, GgufValueType::kString, p);
  }
  GgufBuilder& tensor(TensorSpec t) {
    tensors_.push_back(std::move(t));
    return *this;
  }

  Bytes build() const {
    Bytes b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(b, version);
    put<uint64_t>(b, tensor_count_override.value_or(tensors_.size()));
    put<uint64_t>(b, kv_count_override.value_or(n_kv_));
    put_bytes(b, kvs_);
    std::vector<uint64_t> offsets;
    uint64_t running = 0;
    for (const TensorSpec& t : tensors_) {
      running = align(running);
      const uint64_t off = t.offset.value_or(running);
      offsets.push_back(off);
      running = off + t.data.size();
      put_str(b, t.name);
      put<uint32_t>(b, static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) put<uint64_t>(b, d);
      put<uint32_t>(b, t.type);
      put<uint64_t>(b, off);
    }
    b.resize(align(b.size()), 0);
    const size_t data_start = b.size();
    // No padding after the last tensor, so cutting any byte off the image breaks it.
    for (size_t i = 0; i < tensors_.size(); ++i) {
      // Nothing to write, or a deliberately bogus offset.
      if (tensors_[i].data.empty() || offsets[i] > (uint64_t{1} << 30)) continue;
      const size_t at = data_start + offsets[i];
      if (b.size() < at + tensors_[i].data.size()) b.resize(at + tensors_[i].data.size(), 0);
      std::memcpy(b.data() + at, tensors_[i].data.data(), tensors_[i].data.size());
    }
    return b;
  }

 private:
  uint64_t align(uint64_t x) const { return (x + alignment - 1) / alignment * alignment; }
  Bytes kvs_;
  uint64_t n_kv_ = 0;
  std::vector<TensorSpec> tensors_;
};

}  // namespace tessera::model::testing
