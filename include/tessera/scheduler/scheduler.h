// Scheduler: iteration-level continuous batching as a pure state machine (no threads, no I/O, no
// devices, no clocks: time comes in as `arrival`). It owns the waiting and running queues and the
// KV BlockAllocator with its prefix-cache index; the engine thread is its only caller.
//
// The loop: plan = schedule(); run it; on_step_done(sampled tokens) or on_step_failed(); repeat.
// Exactly one of the two follows every non-empty plan (even when nothing was sampled), in the
// order the plans were made: the scheduler's flights are the one record of plans in flight. Up to
// max_in_flight plans may be outstanding (pipeline parallelism); a sequence in an outstanding
// plan is left out of new plans and is never preempted. Sequences that end after a chunk of
// theirs went out are listed in the next plan's `finished`, so the workers forget them.
// abort()/finish()/add() may come at any time; blocks of an aborted sequence are freed at once.
// A plan in flight may still write them while a later plan hands them to another sequence: that
// is safe because every worker runs plans in order, so the later writes land after the earlier.
//
// Policy per step, inside the token budget: (1) decodes of running sequences, (2) their
// continuing prefill chunks, (3) new admissions from the waiting queue (FCFS by priority, head of
// line blocks). KV capacity decides admission and preemption; the token budget shapes the batch.
// When a running sequence cannot grow, the worst-ranked (highest priority value, latest arrival)
// running sequence not yet in this plan is preempted by recompute: its blocks are released
// (hashed ones stay cached) and it returns to the front of its priority class in waiting.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tessera/kv_cache/block_allocator.h"
#include "tessera/scheduler/scheduler_types.h"
#include "tessera/scheduler/sequence.h"

namespace tessera::scheduler {

class Scheduler {
 public:
  // Throws Error(kInvalidArgument) for a config without blocks, budget or sequences.
  explicit Scheduler(SchedulerConfig cfg);

  // Queues a request the engine validated (engine/request_check.h). Throws
  // Error(kInvalidArgument) for a duplicate id, Error(kResourceExhausted) when max_waiting
  // requests are already queued, and Error(kInternal) for a request that was not validated (an
  // empty prompt, max_tokens < 1, or one that can never fit the context or the KV cache).
  void add(SeqRequest req);
  void add(uint64_t seq_id, std::vector<int32_t> prompt, int max_tokens, int priority = 0,
           double arrival = 0) {
    add(SeqRequest{.seq_id = seq_id,
                   .prompt = std::move(prompt),
                   .max_tokens = max_tokens,
                   .priority = priority,
                   .arrival = arrival});
  }
  void abort(uint64_t seq_id);  // frees its blocks now; unknown ids are ignored
  // The engine decided it stopped (a stop string); frees it. Unknown ids are ignored.
  void finish(uint64_t seq_id) { abort(seq_id); }

  StepPlan schedule();
  // After running a plan: the token sampled for every chunk with sample == true (ids aborted
  // meanwhile may be missing or present; both are fine). Appends them and returns the sequences
  // that sampled one of their stop tokens or reached max_tokens: those are finished and freed
  // already (the one place either is decided). Throws Error(kInvalidArgument) (changing nothing)
  // when a sampled id had no sample chunk or a sample chunk got no token.
  std::vector<FinishedSeq> on_step_done(const std::vector<std::pair<uint64_t, int32_t>>& sampled);
  // The oldest plan in flight failed: its sequences (returned) are in an unknown state on the
  // workers, so they are aborted (freed, and listed for the workers to drop).
  std::vector<uint64_t> on_step_failed();

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  // Ended sequences the workers have not been told about yet (the next plan's `finished`).
  bool has_ended() const { return !ended_.empty(); }
  size_t plans_in_flight() const { return flights_.size(); }
  bool contains(uint64_t seq_id) const { return seqs_.contains(seq_id); }
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return cfg_; }
  // The blocks of attention rank `rank` (0 unless config().attention_ranks > 1).
  const kv_cache::BlockAllocator& allocator(int rank = 0) const {
    return allocs_.at(static_cast<size_t>(rank));
  }
  // For tests and debugging: "" when every invariant holds, else a description of what broke.
  std::string check_invariants() const;

 private:
  struct StepState;  // one schedule() call's budget and choices
  struct PrefixHit {
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;
    int revived = 0;  // hit blocks that are cached (refcount 0): they count against free blocks
  };

  void schedule_running(StepState& st, bool decodes);
  int fit_or_preempt(StepState& st, size_t rank, Sequence& s, int want);
  void admit_waiting(StepState& st);
  bool try_admit(StepState& st, Sequence& s);
  PrefixHit find_prefix(const Sequence& s, int rank) const;
  int choose_rank(const Sequence& s) const;  // for a sequence's first admission
  void add_chunk(StepState& st, Sequence& s, int n);
  void preempt(StepState& st, Sequence& s);
  void register_full_blocks(Sequence& s);
  void free_seq(Sequence& s);
  int tokens_fitting(const Sequence& s) const;  // more tokens s can take with free blocks
  // The blocks of s's attention rank (rank 0 until it has one).
  kv_cache::BlockAllocator& alloc_of(const Sequence& s) {
    return allocs_[static_cast<size_t>(std::max(0, s.attention_rank))];
  }
  const kv_cache::BlockAllocator& alloc_of(const Sequence& s) const {
    return allocs_[static_cast<size_t>(std::max(0, s.attention_rank))];
  }

  SchedulerConfig cfg_;
  std::vector<kv_cache::BlockAllocator> allocs_;  // one per attention rank
  std::unordered_map<uint64_t, Sequence> seqs_;
  std::set<QueueKey> waiting_;
  std::vector<uint64_t> running_;
  uint64_t next_order_ = 0;
  struct Flight {
    std::vector<uint64_t> seqs;                  // sequences in the plan
    std::unordered_set<uint64_t> expect_sample;  // their chunks with sample == true
  };
  std::deque<Flight> flights_;         // plans in flight, oldest first
  std::unordered_set<uint64_t> busy_;  // sequences in any of them
  std::vector<uint64_t> ended_;        // announced sequences ended since the last plan
  SchedulerStats counters_;            // the prefix and preemption counters
};

}  // namespace tessera::scheduler
