// Allocator: the memory of one device behind one interface. An allocator hands out zero-filled
// buffers of its device and moves bytes between them and host memory; tessera::copy (tensor.h)
// is the only caller that moves bytes between devices. Storages keep their allocator alive, so an
// allocator outlives every buffer it handed out.
//
// Implementations: the CPU (aligned heap), the guarded device (here) and CUDA (a caching
// allocator in the ops module, which owns the CUDA runtime). The CPU and guarded allocators hold
// no mutable state; the host cache (make_host_cache) and the CUDA allocator own their caches and
// are owned by whoever made them (the worker, a model).
//
// The guarded device: each buffer is its own anonymous mapping, PROT_NONE except while a
// HostAccess scope (tensor.h) holds it open, which only device ops, copies and collectives do.
// Host code that reads or writes device memory outside one dies with SIGSEGV in a test, as it
// would fault (or silently read garbage) on a GPU.
#pragma once

#include <cstddef>
#include <memory>

#include "tessera/core/device.h"

namespace tessera {

enum class CopyKind : uint8_t { kHostToDevice, kDeviceToHost, kDeviceToDevice };

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // `bytes` zero-filled bytes, at least 64-byte aligned; throws kResourceExhausted.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) noexcept = 0;
  // `rows` rows of `width` bytes, rows `dst_pitch` / `src_pitch` bytes apart; "device" is this
  // allocator's device, "host" plain (or opened guarded) host memory. Ordered after every op
  // already issued on the device (its stream); a copy from or to the host has its bytes in place
  // when it returns, a device-to-device copy is in place in stream order (CUDA returns at once,
  // so a graph can capture it).
  virtual void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                       size_t rows, CopyKind kind) const;
  // True when host code may dereference this device's buffers (inside HostAccess for guarded).
  virtual bool host_addressable() const { return true; }
  // Guarded only: opens (or closes) host access to a buffer this allocator handed out.
  virtual void set_host_access(void* /*p*/, size_t /*bytes*/, bool /*open*/) const {}
  // The queue that device work on this allocator's buffers goes to, opaque here: for CUDA the
  // worker's own cudaStream_t (made by the allocator, so every op, copy and collective on its
  // tensors is ordered on one stream, which a CUDA graph can capture); null for the CPU.
  virtual void* stream() const { return nullptr; }
};

// The stateless allocators of the CPU and the guarded device. CUDA memory comes from a caching
// allocator made by ops::make_allocator; asking here for one throws kUnsupported.
std::shared_ptr<Allocator> default_allocator(Device device);

// A bump arena of host memory for buffers that live and die together (a model's packed weights):
// chunks of at least `chunk_bytes` (best: all the buffers will take), from 2 MiB up aligned and
// advised onto transparent huge pages, carved 64-byte aligned; deallocate() returns nothing, the
// chunks go when the arena does (each tensor from it holds it). Why: the weights are hundreds of
// tensors of 0.1-1 MB each, which the plain allocator puts on 4 KiB pages, and decode streams every
// one of them once per token: a TLB miss per 4 KiB (one per 2 MiB here). Thread-safe.
std::shared_ptr<Allocator> make_host_arena(size_t chunk_bytes = size_t{32} << 20);

// Host memory that keeps freed buffers below 2 MiB (up to max_cached_bytes of them) and hands them
// out again, zeroed, for the next request of the same rounded size: a model's activations, made
// and freed every step in the same sizes. Buffers from 2 MiB up come and go as the plain CPU
// allocator's. Owned by whoever runs the model (worker, model); thread-safe.
std::shared_ptr<Allocator> make_host_cache(size_t max_cached_bytes = size_t{64} << 20);

}  // namespace tessera
