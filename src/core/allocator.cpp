// The CPU and guarded-device allocators (see allocator.h), Device names, and the default copy.
#include "tessera/core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

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

class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (!rounded) return nullptr;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) fail(ErrorCode::kResourceExhausted, "out of memory allocating ", bytes, " bytes");
    std::memset(p, 0, rounded);
    return p;
  }
  void deallocate(void* p, size_t) noexcept override { std::free(p); }
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

}  // namespace tessera
