#include "tessera/kv_cache/block_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
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

TEST(BlockAllocator, CachedBlocksAreRevivedOrEvictedLeastRecentFirst) {
  BlockAllocator a(4);
  auto x = *a.allocate(3);
  const std::vector<int32_t> t0 = {1, 2}, t1 = {3, 4};
  const uint64_t h0 = block_hash(kRootHash, t0), h1 = block_hash(h0, t1);
  EXPECT_NE(h0, h1);
  EXPECT_NE(h0, block_hash(kRootHash, std::vector<int32_t>{2, 1}));
  a.cache_block(x[0], h0);
  a.cache_block(x[1], h1);
  a.cache_block(x[2], h0);  // same content elsewhere: the first block keeps the hash
  EXPECT_FALSE(a.has_hash(x[2]));
  EXPECT_EQ(a.lookup(h0), x[0]);
  a.release(x[1]);
  a.release(x[0]);
  a.release(x[2]);
  EXPECT_EQ(a.num_free(), 4);  // 2 plain + 2 cached
  EXPECT_EQ(a.num_cached(), 2);
  EXPECT_TRUE(a.is_cached(x[0]));
  a.retain(x[0]);  // revive: held again, no longer evictable
  EXPECT_EQ(a.refcount(x[0]), 1);
  EXPECT_EQ(a.num_cached(), 1);
  a.release(x[0]);          // now the most recently released
  auto y = *a.allocate(3);  // 2 plain, then evicts x[1] (released first), not x[0]
  EXPECT_EQ(std::count(y.begin(), y.end(), x[1]), 1);
  EXPECT_FALSE(a.lookup(h1).has_value());
  EXPECT_EQ(a.lookup(h0), x[0]);
  EXPECT_EQ(a.num_free(), 1);
  auto z = *a.allocate(1);
  EXPECT_EQ(z[0], x[0]);
  EXPECT_FALSE(a.lookup(h0).has_value());
  EXPECT_FALSE(a.allocate(1).has_value());
}

TEST(BlockAllocator, RandomOpsWithCachingKeepInvariant) {
  std::mt19937 rng(std::random_device{}());
  BlockAllocator a(32);
  std::vector<int32_t> held;  // one entry per reference
  uint64_t next_hash = 1;
  for (int step = 0; step < 5000; ++step) {
    const uint32_t op = rng() % 4;
    if (op == 0 && !held.empty()) {
      size_t i = rng() % held.size();
      a.release(held[i]);
      held.erase(held.begin() + static_cast<long>(i));
    } else if (op == 1 && !held.empty()) {
      a.cache_block(held[rng() % held.size()], next_hash++);
    } else if (op == 2) {
      if (auto b = a.lookup(rng() % next_hash + 1)) {
        a.retain(*b);
        held.push_back(*b);
      }
    } else if (auto got = a.allocate(static_cast<int>(rng() % 4))) {
      held.insert(held.end(), got->begin(), got->end());
    }
    std::map<int32_t, int> refs;
    for (int32_t b : held) ++refs[b];
    for (auto [b, n] : refs) ASSERT_EQ(a.refcount(b), n);
    ASSERT_EQ(static_cast<int>(refs.size()) + a.num_free(), 32);
    ASSERT_EQ(a.num_used(), static_cast<int>(refs.size()));
  }
}

TEST(KvPool, ShapesAndBudget) {
  KvPoolParams p{
      .num_layers = 2, .num_blocks = 3, .block_size = 16, .num_kv_heads = 3, .head_dim = 64};
  KvPool pool(p);
  EXPECT_EQ(pool.k(1).shape(), (Shape{3, 16, 3, 64}));
  EXPECT_EQ(pool.bytes(), 2u * 2 * 3 * 16 * 3 * 64 * 4);
  EXPECT_EQ(KvPool::blocks_for_budget(p, pool.bytes()), 3);
  EXPECT_EQ(blocks_for(33, 16), 3);
}

}  // namespace
}  // namespace tessera::kv_cache
