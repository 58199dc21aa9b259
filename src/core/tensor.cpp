#include "tessera/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>

#include "tessera/core/error.h"

namespace tessera {

std::shared_ptr<Storage> Storage::allocate(size_t bytes, std::shared_ptr<Allocator> allocator) {
  TESSERA_CHECK(allocator != nullptr, "Storage::allocate without an allocator");
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = allocator->allocate(bytes);
  s->size_ = bytes;
  s->device_ = allocator->device();
  s->allocator_ = std::move(allocator);
  return s;
}

std::shared_ptr<Storage> Storage::borrow(const void* data, size_t bytes,
                                         std::shared_ptr<const void> owner, Device device) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = const_cast<void*>(data);
  s->size_ = bytes;
  s->device_ = device;
  s->owner_ = owner ? std::move(owner) : std::shared_ptr<const void>(data, [](const void*) {});
  return s;
}

Storage::~Storage() {
  if (allocator_) allocator_->deallocate(data_, size_);
}

void Storage::open_host_access() const {
  if (!allocator_ || !allocator_->host_addressable())
    fail(ErrorCode::kInvalidArgument, "host code cannot address memory on ", device_.str());
  std::lock_guard lock(access_mu_);
  if (access_count_++ == 0) allocator_->set_host_access(data_, size_, true);
}

void Storage::close_host_access() const {
  std::lock_guard lock(access_mu_);
  if (--access_count_ == 0) allocator_->set_host_access(data_, size_, false);
}

std::string shape_str(std::span<const int64_t> shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

namespace {
Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}
int64_t product(const Shape& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}
}  // namespace

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  return empty(std::move(shape), dtype, default_allocator(device));
}

Tensor Tensor::empty(Shape shape, DType dtype, const std::shared_ptr<Allocator>& allocator) {
  for (auto d : shape)
    if (d < 0) fail(ErrorCode::kInvalidArgument, "negative dimension in shape ", shape_str(shape));
  const int64_t last = shape.empty() ? 1 : shape.back();
  const int64_t rows = last ? product(shape) / last : 0;
  const size_t bytes = static_cast<size_t>(rows) * tessera::row_bytes(dtype, last);
  return from_storage(Storage::allocate(bytes, allocator), 0, std::move(shape), dtype);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape,
                            DType dtype) {
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  t.dtype_ = dtype;
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  if (t.offset_ + t.nbytes() > t.storage_->size())
    fail(ErrorCode::kOutOfRange, "tensor ", t.str(), " at byte ", byte_offset,
         " runs past its storage of ", t.storage_->size(), " bytes");
  return t;
}

Tensor Tensor::from_floats(std::span<const float> values, Shape shape) {
  if (product(shape) != static_cast<int64_t>(values.size()))
    fail(ErrorCode::kInvalidArgument, "from_floats: ", values.size(), " values for shape ",
         shape_str(shape));
  Tensor t = empty(std::move(shape), DType::kF32);
  if (!values.empty()) std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::numel() const { return product(shape_); }

// Without building the contiguous strides: ops check their operands with this on every call.
bool Tensor::is_contiguous() const {
  if (strides_.size() != shape_.size()) return false;
  int64_t s = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (strides_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

size_t Tensor::row_bytes() const {
  return tessera::row_bytes(dtype_, shape_.empty() ? 1 : shape_.back());
}

size_t Tensor::nbytes() const {
  const int64_t last = shape_.empty() ? 1 : shape_.back();
  const int64_t rows = last ? numel() / last : 0;
  return static_cast<size_t>(rows) * row_bytes();
}

std::span<float> Tensor::f32() const {
  TESSERA_CHECK(dtype_ == DType::kF32 && is_contiguous(), "f32() on ", str());
  return {data_as<float>(), static_cast<size_t>(numel())};
}

Tensor Tensor::view(Shape shape) const {
  TESSERA_CHECK(is_contiguous(), "view of a non-contiguous tensor ", str());
  if (product(shape) != numel())
    fail(ErrorCode::kInvalidArgument, "cannot view ", str(), " as ", shape_str(shape));
  Tensor t = *this;
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  TESSERA_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin,
                ", ", end, ") of ", str());
  TESSERA_CHECK(is_contiguous());
  Tensor t = *this;
  if (ndim() == 1) {
    TESSERA_CHECK(!is_quantized(dtype_), "1-D slice of a quantized tensor");
    t.offset_ += static_cast<size_t>(begin) * tessera::row_bytes(dtype_, 1);
  } else {
    const size_t bytes_per_index =
        static_cast<size_t>(numel() / shape_[0] / shape_.back()) * row_bytes();
    t.offset_ += static_cast<size_t>(begin) * bytes_per_index;
  }
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::cols(int64_t begin, int64_t end) const {
  TESSERA_CHECK(ndim() == 2 && is_contiguous() && !is_quantized(dtype_), "cols() of ", str());
  TESSERA_CHECK(0 <= begin && begin <= end && end <= shape_[1], "cols [", begin, ", ", end, ") of ",
                str());
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(begin) * tessera::row_bytes(dtype_, 1);
  t.shape_[1] = end - begin;
  t.strides_ = {shape_[1], 1};
  return t;
}

std::string Tensor::str() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device().str();
}

}  // namespace tessera
