// The host allocators: the plain CPU allocator's zero-filled, aligned buffers (on huge-page
// boundaries from 2 MiB), and make_host_arena's bump arena for a model's packed weights.
#include "tessera/core/allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera {
namespace {

bool all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

TEST(CpuAllocator, BuffersAreZeroedAlignedAndBigOnesOnHugePageBoundaries) {
  auto a = default_allocator(Device::cpu());
  for (size_t bytes : {size_t{1}, size_t{100}, size_t{4096}, (size_t{2} << 20) + 1}) {
    void* p = a->allocate(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    if (bytes >= (size_t{2} << 20)) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 << 20), 0u);
    }
    EXPECT_TRUE(all_zero(p, bytes)) << bytes;
    std::memset(p, 0xab, bytes);  // the whole request is writable
    a->deallocate(p, bytes);
  }
}

// Random sizes past one chunk: every buffer 64-byte aligned, zeroed, writable, and disjoint from
// every other (each is filled with its own byte, all checked at the end).
TEST(HostArena, CarvesAlignedZeroedDisjointBuffersAcrossChunks) {
  std::mt19937 rng(std::random_device{}());
  for (size_t chunk : {size_t{4096}, size_t{3} << 20}) {
    auto arena = make_host_arena(chunk);
    EXPECT_EQ(arena->device(), Device::cpu());
    struct Buf {
      uint8_t* p;
      size_t n;
      uint8_t fill;
    };
    std::vector<Buf> bufs;
    size_t total = 0;
    while (total < 3 * chunk) {
      const size_t n = 1 + rng() % (chunk / 2 + 200);  // some larger than what a chunk has left
      auto* p = static_cast<uint8_t*>(arena->allocate(n));
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
      ASSERT_TRUE(all_zero(p, n));
      const auto fill = static_cast<uint8_t>(1 + bufs.size() % 255);
      std::memset(p, fill, n);
      bufs.push_back({p, n, fill});
      total += n;
    }
    void* big = arena->allocate(2 * chunk);  // larger than a chunk: a chunk of its own
    ASSERT_NE(big, nullptr);
    EXPECT_TRUE(all_zero(big, 2 * chunk));
    for (const auto& b : bufs)
      for (size_t i = 0; i < b.n; ++i) ASSERT_EQ(b.p[i], b.fill) << "buffer overwritten";
    for (const auto& b : bufs) arena->deallocate(b.p, b.n);  // returns nothing: no effect
    EXPECT_EQ(arena->allocate(0), nullptr);
  }
}

// Tensors keep the arena alive: its memory stays valid after the last handle to it is dropped.
TEST(HostArena, TensorsHoldTheArena) {
  Tensor t;
  {
    auto arena = make_host_arena(1 << 16);
    t = Tensor::empty({64, 8}, DType::kF32, arena);
  }
  for (float& v : t.f32()) v = 1.5f;
  float sum = 0;
  for (float v : t.f32()) sum += v;
  EXPECT_EQ(sum, 1.5f * 512);
}

}  // namespace
}  // namespace tessera
