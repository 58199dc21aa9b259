// Tensor: a typed, shaped view over a Storage. Storage is shared (std::shared_ptr) and either owns
// its bytes (from its device's Allocator, which it keeps alive) or borrows them from a keep-alive
// owner such as a memory-mapped model file. Tensors are cheap value types; views share storage.
// Strides are in elements; block-quantized tensors must be contiguous along the last dimension and
// their rows are addressed in bytes through row_bytes().
//
// data() is an address, not permission to dereference it: only code running "on" the tensor's
// device may touch the bytes (ops, copy, collectives). Host code that needs values copies them to
// a CPU tensor with tessera::copy; HostAccess opens guarded-device memory for the CPU kernels
// that stand in for device kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/allocator.h"
#include "tessera/core/device.h"
#include "tessera/core/dtype.h"

namespace tessera {

class Storage {
 public:
  // Owned, 64-byte aligned, zero-initialised bytes from `allocator` (kept alive by the storage).
  static std::shared_ptr<Storage> allocate(size_t bytes, std::shared_ptr<Allocator> allocator);
  // The same from default_allocator(device) (CPU or guarded).
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device = Device::cpu()) {
    return allocate(bytes, default_allocator(device));
  }
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
  // The allocator of an owned storage; null for borrowed bytes.
  const Allocator* allocator() const { return allocator_.get(); }
  // May host code dereference these bytes (inside a HostAccess for the guarded device)?
  bool host_addressable() const { return !allocator_ || allocator_->host_addressable(); }

 private:
  friend class HostAccess;
  Storage() = default;
  void open_host_access() const;
  void close_host_access() const;
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<Allocator> allocator_;
  // Guarded storages: how many HostAccess scopes hold them open (the pages are readable while
  // this is above zero). Per storage, so concurrent ops on different buffers never interfere.
  mutable std::mutex access_mu_;
  mutable int access_count_ = 0;
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
  // Zero-filled, from `allocator` (the way to get CUDA memory).
  static Tensor empty(Shape shape, DType dtype, const std::shared_ptr<Allocator>& allocator);
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
  Tensor view(Shape shape) const;                  // contiguous reshape, same numel
  Tensor slice(int64_t begin, int64_t end) const;  // rows [begin, end) along dim 0
  // Columns [begin, end) of a contiguous 2-D unquantized tensor: a strided view (rows keep
  // their pitch), for tessera::copy into or out of part of each row.
  Tensor cols(int64_t begin, int64_t end) const;
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

// The one way bytes move between tensors of any devices: dst = src, same shape and dtype. Each
// side is contiguous or a 2-D column view (cols()). Synchronous for the caller.
void copy(const Tensor& dst, const Tensor& src);
// A contiguous copy of `t` in memory from `allocator` (t itself when it already lives there).
Tensor to_device(const Tensor& t, const std::shared_ptr<Allocator>& allocator);
// The stream of the allocator t's bytes came from (Allocator::stream; null for host memory,
// borrowed bytes and an undefined tensor).
void* stream_of(const Tensor& t);
// A contiguous CPU copy of `t` (t itself when it is a CPU tensor): how host code reads results.
Tensor to_host(const Tensor& t);

// Opens guarded-device memory of the given tensors to host code for the scope's lifetime (no-op
// for CPU tensors). Device code only: the guarded device's ops (which run the CPU kernels),
// copies and collectives. Throws kInvalidArgument for a tensor host code cannot address (CUDA).
class HostAccess {
 public:
  HostAccess(std::initializer_list<const Tensor*> tensors)
      : HostAccess(std::span<const Tensor* const>(tensors.begin(), tensors.size())) {}
  explicit HostAccess(std::span<const Tensor* const> tensors);
  ~HostAccess();
  HostAccess(const HostAccess&) = delete;
  HostAccess& operator=(const HostAccess&) = delete;

 private:
  std::vector<const Storage*> opened_;
};

}  // namespace tessera
