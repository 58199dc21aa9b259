// tessera::copy, the one byte mover between devices, and HostAccess (see tensor.h).
#include <algorithm>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"

namespace tessera {
namespace {

// A side of a copy as rows of `width` bytes, `pitch` bytes apart.
struct Rows {
  size_t width = 0, pitch = 0, rows = 0;
};

Rows rows_of(const Tensor& t, const char* side) {
  if (t.ndim() != 2 || t.strides()[1] != 1 || is_quantized(t.dtype()))
    fail(ErrorCode::kInvalidArgument, "copy: ", side, " ", t.str(),
         " is neither contiguous nor a column view");
  const size_t pitch = t.is_contiguous()
                           ? t.row_bytes()
                           : static_cast<size_t>(t.strides()[0]) * row_bytes(t.dtype(), 1);
  return {t.row_bytes(), pitch, static_cast<size_t>(t.dim(0))};
}

}  // namespace

HostAccess::HostAccess(std::span<const Tensor* const> tensors) {
  try {
    for (const Tensor* t : tensors) {
      if (!t || !t->defined()) continue;
      const Storage* s = t->storage().get();
      if (s->device().is_cpu() && s->host_addressable()) continue;
      if (std::find(opened_.begin(), opened_.end(), s) != opened_.end()) continue;
      s->open_host_access();
      opened_.push_back(s);
    }
  } catch (...) {
    for (const Storage* s : opened_) s->close_host_access();
    throw;
  }
}

HostAccess::~HostAccess() {
  for (const Storage* s : opened_) s->close_host_access();
}

void copy(const Tensor& dst, const Tensor& src) {
  if (!dst.defined() || !src.defined()) fail(ErrorCode::kInvalidArgument, "copy: undefined tensor");
  if (dst.dtype() != src.dtype() || dst.shape() != src.shape())
    fail(ErrorCode::kInvalidArgument, "copy: ", src.str(), " into ", dst.str());
  Rows d{dst.nbytes(), dst.nbytes(), 1}, s = d;
  if (!dst.is_contiguous() || !src.is_contiguous()) {
    d = rows_of(dst, "dst");
    s = rows_of(src, "src");
  }
  if (d.width * d.rows == 0) return;
  // A side host code cannot address (CUDA) decides who moves the bytes; the other side is host
  // memory, opened for the copy when it belongs to the guarded device.
  const bool dst_dev = !dst.storage()->host_addressable();
  const bool src_dev = !src.storage()->host_addressable();
  HostAccess access{dst_dev ? nullptr : &dst, src_dev ? nullptr : &src};
  if (!dst_dev && !src_dev) {
    default_allocator(Device::cpu())
        ->copy_2d(dst.data(), d.pitch, src.data(), s.pitch, d.width, d.rows,
                  CopyKind::kDeviceToDevice);
    return;
  }
  const CopyKind kind = dst_dev && src_dev ? CopyKind::kDeviceToDevice
                        : dst_dev          ? CopyKind::kHostToDevice
                                           : CopyKind::kDeviceToHost;
  const Allocator* mover = (dst_dev ? dst : src).storage()->allocator();
  mover->copy_2d(dst.data(), d.pitch, src.data(), s.pitch, d.width, d.rows, kind);
}

void* stream_of(const Tensor& t) {
  const Allocator* a = t.defined() ? t.storage()->allocator() : nullptr;
  return a ? a->stream() : nullptr;
}

Tensor to_device(const Tensor& t, const std::shared_ptr<Allocator>& allocator) {
  const Storage* s = t.storage().get();
  if (s && s->allocator() == allocator.get() && t.is_contiguous()) return t;
  if (s && allocator->device().is_cpu() && s->device().is_cpu() && t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), allocator);
  copy(out, t);
  return out;
}

Tensor to_host(const Tensor& t) { return to_device(t, default_allocator(Device::cpu())); }

}  // namespace tessera
