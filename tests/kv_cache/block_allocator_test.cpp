#include "tessera/kv_cache/block_allocator.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "tessera/kv_cache/kv_pool.h"

namespace tessera::kv_cache {
namespace {

TEST(BlockAllocator, AllocateReleaseRefcount) {
  BlockAllocator a(4);
  auto x = a.allocate(3);
  ASSERT_TRUE(x);
  EXPECT_EQ(a.num_free(), 1);
  EXPECT_FALSE(a.allocate(2));  // nothing taken on failure
  EXPECT_EQ(a.num_free(), 1);
  a.retain((*x)[0]);
  EXPECT_EQ(a.refcount((*x)[0]), 2);
  a.release_all(*x);
  EXPECT_EQ(a.num_free(), 3);
  a.release((*x)[0]);
  EXPECT_EQ(a.num_free(), 4);
}

TEST(BlockAllocator, RandomOpsKeepInvariant) {
  std::mt19937 rng(std::random_device{}());
  BlockAllocator a(64);
  std::vector<std::vector<int32_t>> held;
  for (int step = 0; step < 5000; ++step) {
    if (rng() % 2 && !held.empty()) {
      size_t i = rng() % held.size();
      a.release_all(held[i]);
      held.erase(held.begin() + static_cast<long>(i));
    } else if (auto got = a.allocate(static_cast<int>(rng() % 8))) {
      held.push_back(*got);
    }
    std::set<int32_t> seen;
    int total = 0;
    for (auto& h : held)
      for (int32_t b : h) {
        EXPECT_TRUE(seen.insert(b).second) << "block " << b << " handed out twice";
        ++total;
      }
    ASSERT_EQ(total + a.num_free(), 64);
  }
}

TEST(KvPool, ShapesAndBudget) {
  KvPoolParams p{.num_layers = 2, .num_blocks = 3, .block_size = 16, .num_kv_heads = 3, .head_dim = 64};
  KvPool pool(p);
  EXPECT_EQ(pool.k(1).shape(), (Shape{3, 16, 3, 64}));
  EXPECT_EQ(pool.bytes(), 2u * 2 * 3 * 16 * 3 * 64 * 4);
  EXPECT_EQ(KvPool::blocks_for_budget(p, pool.bytes()), 3);
  EXPECT_EQ(blocks_for(33, 16), 3);
}

}  // namespace
}  // namespace tessera::kv_cache
