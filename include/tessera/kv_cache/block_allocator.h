// BlockAllocator: ids of fixed-size KV-cache blocks with reference counts, so that sequences can
// share blocks (prefix caching). Pure CPU bookkeeping: it owns no memory of the cache itself.
// Not thread-safe: one owner (the scheduler's thread, or a single-sequence runner) changes it.
// Invariants: every id is in exactly one of three states:
//   held      refcount > 0 (possibly registered under a content hash, then shareable);
//   cached    refcount 0 but hashed: its KV content is still valid and can be revived by
//             retain(); it is evicted (least recently released first) only when allocate()
//             runs out of plain free blocks;
//   free      refcount 0, no hash, on the free list.
// num_free() counts free + cached: both can be handed out by allocate().
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace tessera::kv_cache {

class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);

  int num_blocks() const { return static_cast<int>(refcount_.size()); }
  // Blocks allocate() can hand out: plain free ones plus cached (evictable) ones.
  int num_free() const { return static_cast<int>(free_.size() + lru_.size()); }
  int num_cached() const { return static_cast<int>(lru_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  bool can_allocate(int n) const { return n <= num_free(); }
  // n fresh blocks with refcount 1, or nullopt when fewer than n are free (nothing is taken then).
  // Plain free blocks go first; then the least recently released cached blocks lose their hash.
  std::optional<std::vector<int32_t>> allocate(int n);
  // One more holder of a held block, or revives a cached block (refcount 0 -> 1).
  void retain(int32_t block);
  // One holder fewer; at zero a hashed block becomes cached, an unhashed one free.
  void release(int32_t block);
  void release_all(const std::vector<int32_t>& blocks);
  int refcount(int32_t block) const;

  // Prefix cache. Registers a held, full block under `hash` (see block_hash). No-op when the block
  // already has a hash or another block is registered under the same hash (first one wins).
  void cache_block(int32_t block, uint64_t hash);
  // The block registered under `hash` (held or cached), if any.
  std::optional<int32_t> lookup(uint64_t hash) const;
  bool is_cached(int32_t block) const;  // refcount 0 but hashed: retain() revives it
  bool has_hash(int32_t block) const;

 private:
  void check_id(int32_t block) const;
  void evict(int32_t block);  // drop a cached block's hash; it becomes plain free

  std::vector<int> refcount_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are warm in cache
  std::vector<std::optional<uint64_t>> hash_;
  std::unordered_map<uint64_t, int32_t> index_;  // hash -> block
  std::list<int32_t> lru_;                       // cached blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> lru_pos_;
};

// Number of blocks needed for `tokens` tokens.
inline int blocks_for(int64_t tokens, int block_size) {
  return static_cast<int>((tokens + block_size - 1) / block_size);
}

// Content hash of a full block: chains the parent block's hash (kRootHash for the first block)
// with the block's token ids, so equal hashes mean equal whole prefixes (up to 64-bit collisions,
// the same trade-off vLLM makes).
inline constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;
uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens);

}  // namespace tessera::kv_cache
