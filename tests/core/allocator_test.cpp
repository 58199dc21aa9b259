// The host allocators: the plain CPU allocator's zero-filled, aligned buffers (on huge-page
// boundaries from 2 MiB), make_host_arena's bump arena for a model's packed weights, and
// make_host_cache's free lists for a model's per-step activations.
#include "tessera/core/allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
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

// A freed buffer comes back for the next request of the same rounded size, zeroed again; a
// request of another size never gets it; the cache keeps at most its byte budget (the rest goes
// back to the heap) and nothing from 2 MiB up.
TEST(HostCache, ReusesFreedBuffersZeroedBySizeWithinItsBudget) {
  auto cache = make_host_cache(1024);
  void* a = cache->allocate(1000);  // rounds to 1024
  void* b = cache->allocate(1024);
  std::memset(a, 0xab, 1000);
  std::memset(b, 0xcd, 1024);
  cache->deallocate(a, 1000);
  cache->deallocate(b, 1024);  // over the budget: freed
  void* other = cache->allocate(512);
  EXPECT_NE(other, a);  // a is still held by the cache
  void* again = cache->allocate(1024);
  EXPECT_EQ(again, a);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(again) % 64, 0u);
  EXPECT_TRUE(all_zero(again, 1024));
  cache->deallocate(other, 512);
  cache->deallocate(again, 1024);

  auto roomy = make_host_cache();
  const size_t big = size_t{2} << 20;
  void* p = roomy->allocate(big);
  std::memset(p, 0x11, big);
  roomy->deallocate(p, big);
  void* q = roomy->allocate(big);  // from the heap, zeroed whether or not at the same address
  EXPECT_TRUE(all_zero(q, big));
  roomy->deallocate(q, big);
}

// Tensors from the cache keep it alive, and threads allocating and freeing at once each get
// zeroed buffers of their own (each fills its buffer with its own byte and checks it).
TEST(HostCache, TensorsHoldItAndThreadsShareIt) {
  Tensor t;
  {
    auto cache = make_host_cache();
    t = Tensor::empty({64, 8}, DType::kF32, cache);
    std::vector<std::thread> threads;
    std::vector<int> bad(4, 0);
    for (int id = 0; id < 4; ++id)
      threads.emplace_back([&, id] {
        for (int i = 0; i < 2000; ++i) {
          const size_t bytes = 64 * static_cast<size_t>(1 + (i + id) % 5);
          auto* p = static_cast<uint8_t*>(cache->allocate(bytes));
          if (!all_zero(p, bytes)) ++bad[static_cast<size_t>(id)];
          std::memset(p, id + 1, bytes);
          for (size_t k = 0; k < bytes; ++k)
            if (p[k] != id + 1) ++bad[static_cast<size_t>(id)];
          cache->deallocate(p, bytes);
        }
      });
    for (auto& th : threads) th.join();
    for (int id = 0; id < 4; ++id) EXPECT_EQ(bad[static_cast<size_t>(id)], 0) << id;
  }
  for (float& v : t.f32()) v = 2.0f;
  float sum = 0;
  for (float v : t.f32()) sum += v;
  EXPECT_EQ(sum, 2.0f * 512);
}

}  // namespace
}  // namespace tessera
