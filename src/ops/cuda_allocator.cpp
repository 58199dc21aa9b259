// The CUDA caching allocator and its graph pools (cuda_allocator.h). Not run on a GPU yet.
#include "cuda_allocator.h"  // outside the #if: a build without CUDA compiles a non-empty file

#if TESSERA_HAVE_CUDA
#include <algorithm>
#include <cstring>

#include "cuda_common.h"
#include "tessera/core/error.h"

namespace tessera::ops::cuda {
namespace {

// Makes device d current for a call and restores the previous one.
struct Scope {
  explicit Scope(int d) : dev(d) {
    cudaGetDevice(&prev);
    if (prev != d) cudaSetDevice(d);
  }
  ~Scope() {
    if (prev != dev) cudaSetDevice(prev);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  int prev = 0, dev = 0;
};

}  // namespace

CachingAllocator::CachingAllocator(int index) : index_(index) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || index < 0 || index >= n)
    fail(ErrorCode::kUnavailable, "cuda:", index, " is not present (", n,
         " CUDA device(s) visible)");
  Scope s(index_);
  // Non-blocking: no implicit synchronisation with the legacy default stream, and capturable.
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "allocator",
        "cudaStreamCreateWithFlags");
}

CachingAllocator::~CachingAllocator() {
  Scope s(index_);
  cudaStreamSynchronize(stream_);  // nothing still queued may touch the blocks freed below
  cudaStreamDestroy(stream_);
  if (staging_) cudaFreeHost(staging_);
  for (auto& [size, ptrs] : free_)
    for (void* p : ptrs) cudaFree(p);
  // Blocks still in a pool's free list belong to a graph that outlives its allocator: a caller
  // bug, and their memory goes with the context.
}

size_t CachingAllocator::round(size_t b) {
  const size_t unit = b < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (b + unit - 1) / unit * unit;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (!bytes) return nullptr;
  const size_t size = round(bytes);
  Scope s(index_);
  void* p = nullptr;
  std::shared_ptr<Pool> pool;
  {
    std::lock_guard lock(mu_);
    pool = open_;
    auto& list = pool ? pool->free : free_;  // a capture takes only from its own pool
    auto it = list.find(size);
    if (it != list.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    }
  }
  if (!p) {
    cudaError_t e = cudaMalloc(&p, size);  // allowed under relaxed-mode capture
    if (e == cudaErrorMemoryAllocation && !pool) {
      release_cached();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess)
      fail(ErrorCode::kResourceExhausted, "cuda:", index_, ": cudaMalloc of ", size,
           " bytes failed: ", cudaGetErrorString(e));
    if (pool) {
      std::lock_guard lock(mu_);
      pooled_[p] = pool;
    }
  }
  // Under capture this becomes a memset node: the block is zeroed again at every replay.
  check(cudaMemsetAsync(p, 0, size, stream_), "allocate", "cudaMemsetAsync");
  return p;
}

void CachingAllocator::deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  std::lock_guard lock(mu_);
  const size_t size = round(bytes);
  if (auto it = pooled_.find(p); it != pooled_.end()) {
    if (auto pool = it->second.lock()) {
      pool->free[size].push_back(p);
      return;
    }
    pooled_.erase(it);  // its graph is gone: an ordinary block again
  }
  free_[size].push_back(p);
}

void CachingAllocator::open_pool(std::shared_ptr<Pool> pool) {
  std::lock_guard lock(mu_);
  if (open_) fail(ErrorCode::kInternal, "cuda:", index_, ": a graph pool is already open");
  open_ = std::move(pool);
}

void CachingAllocator::close_pool() {
  std::lock_guard lock(mu_);
  open_.reset();
}

void CachingAllocator::release_pool(Pool& pool) {
  std::lock_guard lock(mu_);
  for (auto& [size, ptrs] : pool.free)
    for (void* p : ptrs) {
      pooled_.erase(p);
      free_[size].push_back(p);
    }
  pool.free.clear();
}

void CachingAllocator::release_cached() {
  std::lock_guard lock(mu_);
  for (auto& [size, ptrs] : free_)
    for (void* p : ptrs) cudaFree(p);
  free_.clear();
}

void CachingAllocator::copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                               size_t width, size_t rows, CopyKind kind) const {
  Scope s(index_);
  if (kind == CopyKind::kDeviceToDevice) {  // stream-ordered, no wait: a graph can capture it
    check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice,
                            stream_),
          "copy", "cudaMemcpy2DAsync D2D");
    return;
  }
  // Host memory is pageable (mapped files, heap): stage it through a pinned buffer, a slab of
  // rows at a time, so the DMA engine copies at full speed. The stream orders the copies after
  // every kernel already issued.
  if (dst_pitch == width && src_pitch == width && rows > 1) {  // contiguous: one long row
    width *= rows;
    dst_pitch = src_pitch = width;
    rows = 1;
  }
  if (rows == 1 && width > kStagingBytes) {  // a long row: copy it in slab-sized pieces
    for (size_t off = 0; off < width; off += kStagingBytes) {
      const size_t n = std::min(kStagingBytes, width - off);
      copy_2d(static_cast<char*>(dst) + off, n, static_cast<const char*>(src) + off, n, n, 1, kind);
    }
    return;
  }
  std::lock_guard lock(staging_mu_);
  const size_t rows_per_slab = std::max<size_t>(1, kStagingBytes / std::max<size_t>(width, 1));
  ensure_staging(std::min(rows, rows_per_slab) * width);
  auto* host_stage = static_cast<char*>(staging_);
  for (size_t r0 = 0; r0 < rows; r0 += rows_per_slab) {
    const size_t n = std::min(rows_per_slab, rows - r0);
    if (kind == CopyKind::kHostToDevice) {
      for (size_t r = 0; r < n; ++r)
        std::memcpy(host_stage + r * width, static_cast<const char*>(src) + (r0 + r) * src_pitch,
                    width);
      check(cudaMemcpy2DAsync(static_cast<char*>(dst) + r0 * dst_pitch, dst_pitch, host_stage,
                              width, width, n, cudaMemcpyHostToDevice, stream_),
            "copy", "cudaMemcpy2DAsync H2D");
      check(cudaStreamSynchronize(stream_), "copy", "cudaStreamSynchronize");
    } else {
      check(cudaMemcpy2DAsync(host_stage, width, static_cast<const char*>(src) + r0 * src_pitch,
                              src_pitch, width, n, cudaMemcpyDeviceToHost, stream_),
            "copy", "cudaMemcpy2DAsync D2H");
      check(cudaStreamSynchronize(stream_), "copy", "cudaStreamSynchronize");
      for (size_t r = 0; r < n; ++r)
        std::memcpy(static_cast<char*>(dst) + (r0 + r) * dst_pitch, host_stage + r * width, width);
    }
  }
}

void CachingAllocator::ensure_staging(size_t bytes) const {
  if (bytes <= staging_bytes_) return;
  if (staging_) cudaFreeHost(staging_);
  staging_ = nullptr;
  staging_bytes_ = 0;
  check(cudaHostAlloc(&staging_, bytes, cudaHostAllocDefault), "copy", "cudaHostAlloc");
  staging_bytes_ = bytes;
}

}  // namespace tessera::ops::cuda

#endif
