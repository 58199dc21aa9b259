#include "tessera/kv_cache/kv_pool.h"

#include <gtest/gtest.h>

#include <vector>

namespace tessera::kv_cache {
namespace {

// The pool reports its allocation per layer (K and V), ending at exactly bytes().
TEST(KvPool, ReportsAllocationProgressUpToItsSize) {
  const KvPoolParams p{.num_layers = 3, .num_blocks = 5, .block_size = 4, .num_kv_heads = 2,
                       .head_dim = 8};
  std::vector<uint64_t> done;
  uint64_t total = 0;
  KvPool pool(p, nullptr, [&](uint64_t d, uint64_t t) {
    done.push_back(d);
    total = t;
  });
  const uint64_t per_layer = 2ull * 5 * 4 * 2 * 8 * sizeof(float);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[0], per_layer);
  EXPECT_EQ(done[2], 3 * per_layer);
  EXPECT_EQ(total, pool.bytes());
  EXPECT_EQ(total, 3 * per_layer);
}

}  // namespace
}  // namespace tessera::kv_cache
