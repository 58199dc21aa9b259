// Tensor: a typed, shaped view over a Storage. Storage is shared (std::shared_ptr) and either owns
// its bytes (aligned heap on CPU, cudaMalloc on CUDA) or borrows them from a keep-alive owner such
// as a memory-mapped model file. Tensors are cheap value types; views share storage. Strides are
// in elements; block-quantized tensors must be contiguous along the last dimension and their rows
// are addressed in bytes through row_bytes().
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/dtype.h"

namespace tessera {

enum class DeviceType : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceType::kCUDA, i}; }
  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

class Storage {
 public:
  // Owned, 64-byte aligned, zero-initialised bytes on `device`.
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device = Device::cpu());
  // Borrowed bytes kept valid by `owner` (e.g. a MappedFile).
  static std::shared_ptr<Storage> borrow(const void* data, size_t bytes,
                                         std::shared_ptr<const void> owner,
                                         Device device = Device::cpu());
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }
  bool owned() const { return owner_ == nullptr; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_;
  std::shared_ptr<const void> owner_;
};

using Shape = std::vector<int64_t>;
std::string shape_str(std::span<const int64_t> shape);

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(Shape shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu()) {
    return empty(std::move(shape), dtype, device);  // allocate() zero-fills
  }
  // A contiguous tensor over `storage` starting `byte_offset` bytes in.
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape,
                             DType dtype);
  // Copies host floats into a new F32 CPU tensor.
  static Tensor from_floats(std::span<const float> values, Shape shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? i + ndim() : i); }
  int64_t numel() const;
  bool is_contiguous() const;
  // Bytes of one row (the last dimension) and of the whole contiguous tensor.
  size_t row_bytes() const;
  size_t nbytes() const;

  void* data() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data());
  }
  // Byte address of row `r` of a tensor viewed as [numel/last, last] (contiguous only).
  const uint8_t* row_ptr(int64_t r) const {
    return static_cast<const uint8_t*>(data()) + static_cast<size_t>(r) * row_bytes();
  }
  std::span<float> f32() const;  // whole contiguous F32 tensor as a span

  // Views sharing storage.
  Tensor view(Shape shape) const;                      // contiguous reshape, same numel
  Tensor slice(int64_t begin, int64_t end) const;      // rows [begin, end) along dim 0
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t byte_offset() const { return offset_; }

  std::string str() const;  // "f32[2, 3] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Shape strides_;
};

}  // namespace tessera
