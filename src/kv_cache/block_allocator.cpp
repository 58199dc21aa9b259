#include "tessera/kv_cache/block_allocator.h"

#include "tessera/core/error.h"

namespace tessera::kv_cache {

BlockAllocator::BlockAllocator(int num_blocks) : refcount_(static_cast<size_t>(num_blocks), 0) {
  if (num_blocks <= 0) fail(ErrorCode::kInvalidArgument, "KV cache needs at least one block, got ", num_blocks);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

std::optional<std::vector<int32_t>> BlockAllocator::allocate(int n) {
  if (n < 0 || !can_allocate(n)) return std::nullopt;
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  for (int32_t b : out) refcount_[static_cast<size_t>(b)] = 1;
  return out;
}

void BlockAllocator::retain(int32_t block) {
  TESSERA_CHECK(block >= 0 && block < num_blocks() && refcount_[static_cast<size_t>(block)] > 0,
                "retain of free or invalid block ", block);
  ++refcount_[static_cast<size_t>(block)];
}

void BlockAllocator::release(int32_t block) {
  TESSERA_CHECK(block >= 0 && block < num_blocks() && refcount_[static_cast<size_t>(block)] > 0,
                "release of free or invalid block ", block);
  if (--refcount_[static_cast<size_t>(block)] == 0) free_.push_back(block);
}

void BlockAllocator::release_all(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) release(b);
}

int BlockAllocator::refcount(int32_t block) const {
  TESSERA_CHECK(block >= 0 && block < num_blocks(), "invalid block ", block);
  return refcount_[static_cast<size_t>(block)];
}

}  // namespace tessera::kv_cache
