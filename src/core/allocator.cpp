// The CPU and guarded-device allocators (see allocator.h), Device names, and the default copy.
#include "tessera/core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.h"

namespace tessera {

std::string Device::str() const {
  switch (type) {
    case DeviceType::kCPU:
      return "cpu";
    case DeviceType::kCUDA:
      return "cuda:" + std::to_string(index);
    case DeviceType::kGuarded:
      return "guarded:" + std::to_string(index);
  }
  return "?";
}

DeviceType parse_device_type(std::string_view backend) {
  if (backend == "cpu") return DeviceType::kCPU;
  if (backend == "cuda") return DeviceType::kCUDA;
  if (backend == "guarded") return DeviceType::kGuarded;
  fail(ErrorCode::kInvalidArgument, "unknown backend '", backend,
       "' (expected cpu, cuda or guarded)");
}

const char* device_backend_name(Device device) {
  switch (device.type) {
    case DeviceType::kCPU:
      return "cpu";
    case DeviceType::kCUDA:
      return "cuda";
    case DeviceType::kGuarded:
      return "guarded";
  }
  return "?";
}

void Allocator::copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                        size_t width, size_t rows, CopyKind) const {
  if (dst_pitch == width && src_pitch == width) {
    if (width != 0 && rows != 0) std::memmove(dst, src, width * rows);
    return;
  }
  for (size_t r = 0; r < rows; ++r)
    std::memmove(static_cast<char*>(dst) + r * dst_pitch,
                 static_cast<const char*>(src) + r * src_pitch, width);
}

namespace {

constexpr size_t kHugePage = size_t{2} << 20;  // an x86-64 transparent huge page

class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    // Buffers of 2 MiB and more (a model's weights, the KV pool) on transparent huge pages where
    // the kernel offers them (THP "madvise" mode): decode streams every weight once per token,
    // and with 4 KiB pages each page of it is a TLB miss.
    const size_t align = bytes >= kHugePage ? kHugePage : 64;
    const size_t rounded = (bytes + align - 1) / align * align;
    if (!rounded) return nullptr;
    void* p = std::aligned_alloc(align, rounded);
    if (!p) fail(ErrorCode::kResourceExhausted, "out of memory allocating ", bytes, " bytes");
    if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);  // a hint: no error if refused
    std::memset(p, 0, rounded);
    return p;
  }
  void deallocate(void* p, size_t) noexcept override { std::free(p); }
};

class HostArena final : public Allocator {
 public:
  explicit HostArena(size_t chunk_bytes) : chunk_bytes_(chunk_bytes) {}
  ~HostArena() override {
    for (void* c : chunks_) std::free(c);
  }
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (!rounded) return nullptr;
    std::lock_guard lk(mu_);
    if (rounded > left_) {
      // Huge-page aligned and advised from 2 MiB up; a smaller chunk (a test's tiny model) is
      // plain memory.
      const bool huge = std::max(rounded, chunk_bytes_) >= kHugePage;
      const size_t align = huge ? kHugePage : 64;
      const size_t size = (std::max(rounded, chunk_bytes_) + align - 1) / align * align;
      void* c = std::aligned_alloc(align, size);
      if (!c) fail(ErrorCode::kResourceExhausted, "out of memory allocating ", size, " bytes");
      if (huge) madvise(c, size, MADV_HUGEPAGE);  // a hint: no error if refused
      std::memset(c, 0, size);
      chunks_.push_back(c);
      next_ = static_cast<char*>(c);
      left_ = size;
    }
    void* p = next_;
    next_ += rounded;
    left_ -= rounded;
    return p;
  }
  void deallocate(void*, size_t) noexcept override {}

 private:
  size_t chunk_bytes_;
  std::mutex mu_;
  std::vector<void*> chunks_;
  char* next_ = nullptr;
  size_t left_ = 0;
};

// Free lists by rounded size over the plain CPU allocator; a buffer is zeroed again when it is
// handed out a second time (the Allocator contract). Only buffers below kHugePage are kept, and at
// most max_cached_ bytes of them: those are the per-step activations, whose allocation otherwise
// cost a malloc, and above glibc's mmap threshold (128 KiB: a step's logits) an mmap, its page
// faults and an munmap, every step.
class HostCache final : public Allocator {
 public:
  explicit HostCache(size_t max_cached) : max_cached_(max_cached) {}
  ~HostCache() override {
    for (auto& [bytes, list] : free_)
      for (void* p : list) base_->deallocate(p, bytes);
  }
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded && rounded < kHugePage) {
      void* p = nullptr;
      {
        std::lock_guard lk(mu_);
        auto it = free_.find(rounded);
        if (it != free_.end() && !it->second.empty()) {
          p = it->second.back();
          it->second.pop_back();
          cached_ -= rounded;
        }
      }
      if (p) {
        std::memset(p, 0, rounded);
        return p;
      }
    }
    return base_->allocate(rounded);
  }
  void deallocate(void* p, size_t bytes) noexcept override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (p && rounded < kHugePage) {
      std::lock_guard lk(mu_);
      if (cached_ + rounded <= max_cached_) {
        try {
          free_[rounded].push_back(p);
          cached_ += rounded;
          return;
        } catch (...) {  // no memory for the list entry: give the buffer back instead
        }
      }
    }
    base_->deallocate(p, rounded);
  }

 private:
  const std::shared_ptr<Allocator> base_ = default_allocator(Device::cpu());
  const size_t max_cached_;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // rounded size -> buffers
  size_t cached_ = 0;
};

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
size_t round_to_pages(size_t bytes) {
  const size_t page = page_size();
  return (bytes + page - 1) / page * page;
}

// Each buffer is its own anonymous mapping (zero-filled by the kernel), so protection never spills
// onto a neighbour. Closed buffers are PROT_NONE.
class GuardedAllocator final : public Allocator {
 public:
  explicit GuardedAllocator(int index) : index_(index) {}
  Device device() const override { return Device::guarded(index_); }
  void* allocate(size_t bytes) override {
    if (!bytes) return nullptr;
    void* p = mmap(nullptr, round_to_pages(bytes), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      fail(ErrorCode::kResourceExhausted, "guarded device: mmap of ", bytes,
           " bytes failed: ", std::strerror(errno));
    return p;
  }
  void deallocate(void* p, size_t bytes) noexcept override {
    if (p) munmap(p, round_to_pages(bytes));
  }
  void set_host_access(void* p, size_t bytes, bool open) const override {
    if (!p) return;
    if (mprotect(p, round_to_pages(bytes), open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
      fail(ErrorCode::kInternal, "guarded device: mprotect failed: ", std::strerror(errno));
  }

 private:
  int index_;
};

}  // namespace

std::shared_ptr<Allocator> default_allocator(Device device) {
  switch (device.type) {
    case DeviceType::kCPU: {
      static const std::shared_ptr<Allocator> cpu = std::make_shared<CpuAllocator>();
      return cpu;
    }
    case DeviceType::kGuarded:
      return std::make_shared<GuardedAllocator>(device.index);
    case DeviceType::kCUDA:
      break;
  }
  fail(ErrorCode::kUnsupported, "memory on ", device.str(),
       " comes from the worker's CUDA allocator (ops::make_allocator), not a default one");
}

std::shared_ptr<Allocator> make_host_arena(size_t chunk_bytes) {
  return std::make_shared<HostArena>(chunk_bytes);
}

std::shared_ptr<Allocator> make_host_cache(size_t max_cached_bytes) {
  return std::make_shared<HostCache>(max_cached_bytes);
}

}  // namespace tessera
