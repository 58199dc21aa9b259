// The scheduling policy: one schedule() call, split into short policy functions. Capacity (what
// fits in KV blocks: fit_or_preempt, try_admit) is decided apart from batch shape (token budget).
#include <algorithm>
#include <cstdint>
#include <span>
#include <unordered_set>

#include "tessera/core/error.h"
#include "tessera/scheduler/scheduler.h"

namespace tessera::scheduler {

using kv_cache::blocks_for;

struct Scheduler::StepState {
  StepPlan plan;
  int budget = 0;                          // tokens left in this step
  std::vector<uint64_t> order;             // running sequences by rank (best first) at step start
  std::unordered_set<uint64_t> scheduled;  // in plan.chunks
  std::unordered_set<uint64_t> preempted;  // in plan.preempted
  size_t max_seqs = SIZE_MAX;  // sequences this plan may take (its share of the pipeline)
};

StepPlan Scheduler::schedule() {
  TESSERA_CHECK(static_cast<int>(flights_.size()) < std::max(1, cfg_.max_in_flight),
                "schedule() with ", flights_.size(), " plans in flight (max ", cfg_.max_in_flight,
                ")");
  StepState st;
  st.budget = cfg_.max_num_batched_tokens;
  st.order = running_;
  // With P plans in flight, each takes about 1/P of the sequences, so that every pipeline stage
  // has a micro-batch of its own instead of one plan taking all and the rest running empty.
  if (cfg_.max_in_flight > 1) {
    const size_t total = running_.size() + waiting_.size(),
                 p = static_cast<size_t>(cfg_.max_in_flight);
    st.max_seqs = std::max<size_t>(1, (total + p - 1) / p);
  }
  std::sort(st.order.begin(), st.order.end(),
            [&](uint64_t a, uint64_t b) { return seqs_.at(a).key < seqs_.at(b).key; });
  schedule_running(st, /*decodes=*/true);
  schedule_running(st, /*decodes=*/false);
  admit_waiting(st);
  st.plan.finished = std::move(ended_);
  ended_.clear();
  if (!st.plan.empty()) {
    Flight f;
    for (const protocol::ExecuteChunk& c : st.plan.chunks) {
      f.seqs.push_back(c.seq_id);
      busy_.insert(c.seq_id);
      if (c.sample) f.expect_sample.insert(c.seq_id);
    }
    flights_.push_back(std::move(f));
  }
  return std::move(st.plan);
}

// Running sequences in rank order: either the decodes or the continuing prefills.
void Scheduler::schedule_running(StepState& st, bool decodes) {
  for (size_t rank = 0;
       rank < st.order.size() && st.budget > 0 && st.scheduled.size() < st.max_seqs; ++rank) {
    auto it = seqs_.find(st.order[rank]);
    if (it == seqs_.end()) continue;
    Sequence& s = it->second;
    if (!s.running || st.scheduled.contains(s.id()) || busy_.contains(s.id()) ||
        s.is_decode() != decodes)
      continue;
    int n = fit_or_preempt(st, rank, s, std::min(s.len() - s.num_computed, st.budget));
    if (n > 0) add_chunk(st, s, n);
  }
}

// How many of `want` tokens s can take now. A prefill chunk shrinks to the free blocks; when not
// even one token fits, running sequences ranked below s and not in this plan are preempted,
// worst first (only those of s's attention rank: their blocks are the ones s can use). With none
// left, a decode preempts itself and a prefill waits (keeping its blocks: the sequences in this
// plan progress and finish, so this never deadlocks).
int Scheduler::fit_or_preempt(StepState& st, size_t rank, Sequence& s, int want) {
  for (;;) {
    int fit = std::min(want, tokens_fitting(s));
    if (fit > 0) return fit;
    Sequence* victim = nullptr;
    for (size_t r = st.order.size(); r-- > rank + 1 && !victim;) {
      auto it = seqs_.find(st.order[r]);
      if (it != seqs_.end() && it->second.running && !st.scheduled.contains(it->first) &&
          !busy_.contains(it->first) && it->second.attention_rank == s.attention_rank)
        victim = &it->second;
    }
    if (!victim) {
      if (s.is_decode()) preempt(st, s);
      return 0;
    }
    preempt(st, *victim);
  }
}

int Scheduler::tokens_fitting(const Sequence& s) const {
  const int capacity = static_cast<int>(s.blocks.size()) + alloc_of(s).num_free();
  return capacity * cfg_.block_size - s.num_computed;
}

// FCFS by rank; the head of the queue blocks the rest (no starvation of long prompts).
void Scheduler::admit_waiting(StepState& st) {
  while (st.budget > 0 && !waiting_.empty() && st.scheduled.size() < st.max_seqs &&
         static_cast<int>(running_.size()) < cfg_.max_num_seqs) {
    Sequence& s = seqs_.at(waiting_.begin()->seq_id);
    if (st.preempted.contains(s.id()) || !try_admit(st, s)) return;
  }
}

// Admits s when its cached prefix plus blocks for its first chunk fit; commits nothing otherwise.
bool Scheduler::try_admit(StepState& st, Sequence& s) {
  const bool first = s.attention_rank < 0;
  if (first) s.attention_rank = choose_rank(s);
  PrefixHit hit = find_prefix(s, s.attention_rank);
  const int hit_blocks = static_cast<int>(hit.blocks.size());
  const int start = hit_blocks * cfg_.block_size;
  const int n = std::min(s.len() - start, st.budget);
  const int need = blocks_for(start + n, cfg_.block_size) - hit_blocks + hit.revived;
  if (!alloc_of(s).can_allocate(need)) {
    if (first) s.attention_rank = -1;  // chosen again when it fits
    return false;
  }
  for (int32_t b : hit.blocks) alloc_of(s).retain(b);
  s.blocks = std::move(hit.blocks);
  s.hashes = std::move(hit.hashes);
  s.num_computed = start;
  if (cfg_.enable_prefix_caching) {
    counters_.prefix_queried_tokens += static_cast<uint64_t>(s.len());
    counters_.prefix_hit_tokens += static_cast<uint64_t>(start);
  }
  waiting_.erase(waiting_.begin());
  running_.push_back(s.id());
  s.running = true;
  add_chunk(st, s, n);
  return true;
}

// A first admission's rank: the longest cached prefix of the prompt (its blocks are there), then
// the fewest blocks in use (spreading the load), then the lowest rank.
int Scheduler::choose_rank(const Sequence& s) const {
  int best = 0;
  size_t best_hit = 0;
  int best_used = 0;
  for (int r = 0; r < static_cast<int>(allocs_.size()); ++r) {
    const size_t hit = find_prefix(s, r).blocks.size();
    const int used = allocs_[static_cast<size_t>(r)].num_used();
    if (r == 0 || hit > best_hit || (hit == best_hit && used < best_used)) {
      best = r;
      best_hit = hit;
      best_used = used;
    }
  }
  return best;
}

// The longest chain of cached full blocks of s, never covering its last token: that one must
// be fed so that the model produces logits for it.
Scheduler::PrefixHit Scheduler::find_prefix(const Sequence& s, int rank) const {
  PrefixHit hit;
  if (!cfg_.enable_prefix_caching) return hit;
  const kv_cache::BlockAllocator& alloc = allocs_[static_cast<size_t>(rank)];
  const int bs = cfg_.block_size;
  uint64_t parent = kv_cache::kRootHash;
  for (int i = 0; i < (s.len() - 1) / bs; ++i) {
    parent =
        kv_cache::block_hash(parent, std::span<const int32_t>(s.tokens).subspan(
                                         static_cast<size_t>(i * bs), static_cast<size_t>(bs)));
    std::optional<int32_t> b = alloc.lookup(parent);
    if (!b) break;
    hit.blocks.push_back(*b);
    hit.hashes.push_back(parent);
    if (alloc.is_cached(*b)) ++hit.revived;
  }
  return hit;
}

// Feeds the next n tokens of s this step, growing its block table to cover them.
void Scheduler::add_chunk(StepState& st, Sequence& s, int n) {
  const int start = s.num_computed, end = start + n;
  const int grow = blocks_for(end, cfg_.block_size) - static_cast<int>(s.blocks.size());
  if (grow > 0) {
    auto got = alloc_of(s).allocate(grow);
    TESSERA_CHECK(got.has_value(), "allocation of ", grow, " blocks failed after capacity check");
    s.blocks.insert(s.blocks.end(), got->begin(), got->end());
  }
  protocol::ExecuteChunk c{
      .seq_id = s.id(),
      .tokens = std::vector<int32_t>(s.tokens.begin() + start, s.tokens.begin() + end),
      .start_pos = start,
      .block_table = s.blocks,
      .sample = end == s.len(),
      .attention_rank = std::max(0, s.attention_rank)};
  s.num_computed = end;
  s.announced = true;
  st.budget -= n;
  st.plan.num_batched_tokens += n;
  st.scheduled.insert(s.id());
  st.plan.chunks.push_back(std::move(c));
}

// Preemption by recompute: s gives its blocks back (hashed ones stay cached, so the recompute
// often hits them) and waits again, ahead of later arrivals of its priority.
void Scheduler::preempt(StepState& st, Sequence& s) {
  free_seq(s);
  s.running = false;
  waiting_.insert(s.key);
  st.plan.preempted.push_back(s.id());
  st.preempted.insert(s.id());
  ++counters_.preemptions;
}

}  // namespace tessera::scheduler
