#include "tessera/kv_cache/block_allocator.h"

#include "tessera/core/error.h"

namespace tessera::kv_cache {
namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finalizer: full avalanche
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent ^ (0x9e3779b97f4a7c15ULL * (tokens.size() + 1)));
  for (int32_t t : tokens) h = mix64(h + 0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(t));
  return h;
}

BlockAllocator::BlockAllocator(int num_blocks)
    : refcount_(static_cast<size_t>(num_blocks > 0 ? num_blocks : 0), 0),
      hash_(refcount_.size()),
      lru_pos_(refcount_.size(), lru_.end()) {
  if (num_blocks <= 0)
    fail(ErrorCode::kInvalidArgument, "KV cache needs at least one block, got ", num_blocks);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

void BlockAllocator::check_id(int32_t block) const {
  TESSERA_CHECK(block >= 0 && block < num_blocks(), "invalid block ", block);
}

void BlockAllocator::evict(int32_t block) {
  auto b = static_cast<size_t>(block);
  index_.erase(*hash_[b]);
  hash_[b].reset();
  lru_.erase(lru_pos_[b]);
  lru_pos_[b] = lru_.end();
}

std::optional<std::vector<int32_t>> BlockAllocator::allocate(int n) {
  if (n < 0 || !can_allocate(n)) return std::nullopt;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n));
  while (static_cast<int>(out.size()) < n) {
    if (free_.empty()) {  // reuse the least recently released cached block
      int32_t b = lru_.front();
      evict(b);
      out.push_back(b);
      continue;
    }
    out.push_back(free_.back());
    free_.pop_back();
  }
  for (int32_t b : out) refcount_[static_cast<size_t>(b)] = 1;
  return out;
}

void BlockAllocator::retain(int32_t block) {
  check_id(block);
  auto b = static_cast<size_t>(block);
  if (refcount_[b] == 0) {
    TESSERA_CHECK(is_cached(block), "retain of free block ", block);
    lru_.erase(lru_pos_[b]);
    lru_pos_[b] = lru_.end();
  }
  ++refcount_[b];
}

void BlockAllocator::release(int32_t block) {
  check_id(block);
  auto b = static_cast<size_t>(block);
  TESSERA_CHECK(refcount_[b] > 0, "release of free block ", block);
  if (--refcount_[b] > 0) return;
  if (hash_[b]) {
    lru_pos_[b] = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

void BlockAllocator::release_all(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) release(b);
}

int BlockAllocator::refcount(int32_t block) const {
  check_id(block);
  return refcount_[static_cast<size_t>(block)];
}

void BlockAllocator::cache_block(int32_t block, uint64_t hash) {
  check_id(block);
  auto b = static_cast<size_t>(block);
  TESSERA_CHECK(refcount_[b] > 0, "cache_block of unheld block ", block);
  if (hash_[b] || index_.contains(hash)) return;
  hash_[b] = hash;
  index_.emplace(hash, block);
}

std::optional<int32_t> BlockAllocator::lookup(uint64_t hash) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

bool BlockAllocator::is_cached(int32_t block) const {
  check_id(block);
  auto b = static_cast<size_t>(block);
  return refcount_[b] == 0 && hash_[b].has_value();
}

bool BlockAllocator::has_hash(int32_t block) const {
  check_id(block);
  return hash_[static_cast<size_t>(block)].has_value();
}

}  // namespace tessera::kv_cache
