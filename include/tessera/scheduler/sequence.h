// Sequence: the scheduler's record of one request (its tokens, KV blocks and progress). Owned by
// the Scheduler that created it; nothing else holds one.
// Invariants while running and no step is in flight: blocks.size() == blocks_for(num_computed);
// num_computed < tokens.size() (the last known token is not yet in the KV cache); hashes[i] is the
// chain hash of full block i for i < hashes.size() <= num_computed / block_size. Waiting
// sequences hold no blocks and have num_computed == 0.
#pragma once

#include <compare>
#include <cstdint>
#include <vector>

namespace tessera::scheduler {

// Queue order: lower priority value first, then earlier arrival, then earlier add().
struct QueueKey {
  int priority = 0;
  double arrival = 0;
  uint64_t order = 0;
  uint64_t seq_id = 0;
  auto operator<=>(const QueueKey&) const = default;
};

struct Sequence {
  QueueKey key;
  std::vector<int32_t> tokens;  // prompt, then sampled tokens
  int prompt_len = 0;
  int max_tokens = 0;
  std::vector<int32_t> stop_token_ids;
  int num_computed = 0;          // tokens whose KV is written (or being written this step)
  std::vector<int32_t> blocks;   // block table
  std::vector<uint64_t> hashes;  // chain hashes of the leading full blocks
  bool running = false;
  bool announced = false;  // a chunk of it went out: the workers hold its state until told
  // Data-parallel expert attention: the rank whose blocks it uses, chosen at its first admission
  // and kept (its sampler lives there); -1 until then.
  int attention_rank = -1;
  uint64_t id() const { return key.seq_id; }
  int len() const { return static_cast<int>(tokens.size()); }
  int num_generated() const { return len() - prompt_len; }
  bool is_decode() const { return num_computed == len() - 1 && num_generated() > 0; }
};

}  // namespace tessera::scheduler
