// Scheduler value types: its configuration, the StepPlan it hands the engine each iteration and
// its counters. Plain values; whoever holds one owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/protocol/step.h"

namespace tessera::scheduler {

struct SchedulerConfig {
  int num_blocks = 0;                 // KV cache blocks (all of them)
  int block_size = 16;                // tokens per block
  int max_num_seqs = 64;              // running sequences at once
  int max_num_batched_tokens = 2048;  // tokens fed per step, decodes and prefill chunks together
  int max_model_len = 0;              // prompt + max_tokens limit; 0: only the cache size limits
  bool enable_prefix_caching = true;
  int max_waiting = 1024;  // queued (not yet running) requests before add() refuses
  // Plans that may be in flight at once (pipeline parallelism: one micro-batch per stage). A
  // sequence is in at most one of them, so each plan holds different sequences.
  int max_in_flight = 1;
  // Data-parallel attention over this many ranks (expert parallelism): each rank has its own
  // num_blocks blocks (its own allocator and prefix cache), so the group holds attention_ranks x
  // num_blocks. A sequence is given a rank at its first admission, for good: the one with the
  // longest cached prefix of its prompt, then the one using the fewest blocks, then the lowest;
  // it preempts only sequences of its own rank.
  int attention_ranks = 1;
};

// A new request for add().
struct SeqRequest {
  uint64_t seq_id = 0;
  std::vector<int32_t> prompt;
  int max_tokens = 16;  // sampled tokens after which the sequence finishes by itself
  // Tokens that finish the sequence when sampled (the model's EOS unless ignore_eos, and the
  // request's stop_token_ids): the scheduler owns every finish a token id decides.
  std::vector<int32_t> stop_token_ids;
  int priority = 0;    // lower runs first; FCFS (arrival, then add order) within a priority
  double arrival = 0;  // caller's clock, only compared
};

// A sequence the scheduler finished (and freed) in on_step_done, and why. Stop strings are the
// engine's (they need the text); everything a token count or a token id decides is here.
enum class FinishCause { kStopToken, kLength };
struct FinishedSeq {
  uint64_t seq_id = 0;
  FinishCause cause = FinishCause::kLength;
};

struct StepPlan {
  // One sequence's part of the step, in the wire type the workers receive (no copy between the
  // scheduler's plan and the engine's ExecutePlan): tokens fed now (prompt chunk, recompute or
  // the last sampled token), start_pos == tokens already in the KV cache, every block of the
  // sequence in order, sample == the last known token is fed and the next one is sampled.
  std::vector<protocol::ExecuteChunk> chunks;  // at most one per sequence
  // Sequences whose KV blocks were taken back this step: workers drop their state; they come
  // back later in a chunk with start_pos 0 (or a prefix-cache hit) and recompute.
  std::vector<uint64_t> preempted;
  // Sequences that ended (finished, aborted) since the last plan after a chunk of theirs went out:
  // the workers forget them. A plan may carry only these (a plan all the same: it is in flight
  // until its on_step_done, so the workers see the news in order).
  std::vector<uint64_t> finished;
  int num_batched_tokens = 0;  // sum of chunks' tokens, <= max_num_batched_tokens
  bool empty() const { return chunks.empty() && finished.empty(); }
};

struct SchedulerStats {
  int running = 0, waiting = 0;
  // used + free + cached == total. Cached blocks hold reusable prefixes and are evicted on demand.
  int used_blocks = 0, free_blocks = 0, cached_blocks = 0, total_blocks = 0;
  uint64_t prefix_queried_tokens = 0, prefix_hit_tokens = 0, preemptions = 0;
};

}  // namespace tessera::scheduler
