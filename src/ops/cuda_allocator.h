// Private to the ops' CUDA files, built with TESSERA_HAVE_CUDA only: the caching allocator of one
// GPU (ops::make_allocator) and the stream it owns. Freed blocks go to a size-keyed free list and
// are handed out again (zeroed) instead of going back to cudaFree, since cudaMalloc/cudaFree
// synchronise the device; sizes round up to 512 bytes (small) or 2 MiB (large) so blocks are
// reusable across steps.
//
// Graph pools: while a CUDA graph is being captured on the stream (ops::DeviceGraph), its
// allocations come from a pool of its own and its frees return there, so the blocks a graph's
// replays write are never handed to other work while the graph lives; the pool's blocks go back to
// the shared list when the graph is destroyed. The allocator owns its stream, free lists and
// pools' bookkeeping, under a mutex; whoever made it (the worker) owns the allocator.
#pragma once

#if TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tessera/core/allocator.h"

namespace tessera::ops::cuda {

class CachingAllocator final : public Allocator {
 public:
  // The blocks of one graph that are free for its capture to reuse.
  struct Pool {
    std::map<size_t, std::vector<void*>> free;
  };

  explicit CachingAllocator(int index);
  ~CachingAllocator() override;
  Device device() const override { return Device::cuda(index_); }
  bool host_addressable() const override { return false; }
  void* stream() const override { return stream_; }
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) noexcept override;
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows, CopyKind kind) const override;

  // Until close_pool(), allocations come from `pool` (or fresh cudaMalloc) and their frees go
  // back to it. One pool open at a time (captures are serialised on the stream).
  void open_pool(std::shared_ptr<Pool> pool);
  void close_pool();
  // The pool's free blocks back to the shared list (its graph is gone and the stream idle); blocks
  // of it still held by a tensor go there when freed.
  void release_pool(Pool& pool);

 private:
  static size_t round(size_t b);
  void release_cached();
  void ensure_staging(size_t bytes) const;

  // The pinned staging buffer, grown on demand up to kStagingBytes (copies are serialised on it).
  static constexpr size_t kStagingBytes = size_t{16} << 20;

  int index_;
  cudaStream_t stream_ = nullptr;  // the worker's stream (owned)
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::shared_ptr<Pool> open_;                   // the pool of the capture in progress
  std::map<void*, std::weak_ptr<Pool>> pooled_;  // every live or pooled block of a graph pool
  mutable std::mutex staging_mu_;
  mutable void* staging_ = nullptr;
  mutable size_t staging_bytes_ = 0;
};

}  // namespace tessera::ops::cuda

#endif
