// BlockAllocator: ids of fixed-size KV-cache blocks with reference counts, so that sequences can
// share blocks later (prefix caching). Pure CPU bookkeeping: it owns no memory of the cache itself.
// Not thread-safe: one owner (the scheduler's thread, or a single-sequence runner) changes it.
// Invariant: every id is either on the free list (refcount 0) or held (refcount > 0).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace tessera::kv_cache {

class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);

  int num_blocks() const { return static_cast<int>(refcount_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  bool can_allocate(int n) const { return n <= num_free(); }
  // n fresh blocks with refcount 1, or nullopt when fewer than n are free (nothing is taken then).
  std::optional<std::vector<int32_t>> allocate(int n);
  void retain(int32_t block);  // one more holder of a held block
  void release(int32_t block);  // one holder fewer; back on the free list at zero
  void release_all(const std::vector<int32_t>& blocks);
  int refcount(int32_t block) const;

 private:
  std::vector<int> refcount_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are warm in cache
};

// Number of blocks needed for `tokens` tokens.
inline int blocks_for(int64_t tokens, int block_size) {
  return static_cast<int>((tokens + block_size - 1) / block_size);
}

}  // namespace tessera::kv_cache
