// Scheduler lifecycle: configuration, admission checks, abort/finish, step results, stats and
// the invariant checker. The per-step policy lives in schedule_step.cpp.
#include "tessera/scheduler/scheduler.h"

#include <algorithm>
#include <span>
#include <sstream>

#include "tessera/core/error.h"

namespace tessera::scheduler {

using kv_cache::blocks_for;

namespace {

const SchedulerConfig& validated(const SchedulerConfig& c) {
  if (c.num_blocks <= 0 || c.block_size <= 0 || c.max_num_seqs <= 0 ||
      c.max_num_batched_tokens <= 0 || c.max_model_len < 0 || c.max_waiting < 0 ||
      c.attention_ranks <= 0)
    fail(ErrorCode::kInvalidArgument, "bad scheduler config: num_blocks ", c.num_blocks,
         ", block_size ", c.block_size, ", max_num_seqs ", c.max_num_seqs,
         ", max_num_batched_tokens ", c.max_num_batched_tokens, ", max_model_len ", c.max_model_len,
         ", max_waiting ", c.max_waiting, ", attention_ranks ", c.attention_ranks);
  return c;
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig cfg) : cfg_(validated(cfg)) {
  for (int r = 0; r < std::max(1, cfg_.attention_ranks); ++r) allocs_.emplace_back(cfg_.num_blocks);
}

void Scheduler::add(SeqRequest r) {
  const auto p = static_cast<int64_t>(r.prompt.size());
  const int64_t total = p + r.max_tokens;
  // Requests were validated once, by the engine (engine/request_check.h), against the same
  // context and KV cache: a request that breaks these is a bug upstream, not a client's error.
  if (p == 0 || r.max_tokens < 1 || (cfg_.max_model_len > 0 && total > cfg_.max_model_len) ||
      blocks_for(total, cfg_.block_size) > cfg_.num_blocks)
    fail(ErrorCode::kInternal, "sequence ", r.seq_id, " was not validated: prompt ", p,
         " tokens + max_tokens ", r.max_tokens, " (context ", cfg_.max_model_len, ", KV cache ",
         static_cast<int64_t>(cfg_.num_blocks) * cfg_.block_size, " tokens)");
  // What only the scheduler's state decides.
  if (seqs_.contains(r.seq_id))
    fail(ErrorCode::kInvalidArgument, "duplicate sequence id ", r.seq_id);
  if (static_cast<int>(waiting_.size()) >= cfg_.max_waiting)
    fail(ErrorCode::kResourceExhausted, "waiting queue full (", cfg_.max_waiting, " requests)");
  Sequence s;
  s.key = QueueKey{
      .priority = r.priority, .arrival = r.arrival, .order = next_order_++, .seq_id = r.seq_id};
  s.prompt_len = static_cast<int>(p);
  s.max_tokens = r.max_tokens;
  s.stop_token_ids = std::move(r.stop_token_ids);
  s.tokens = std::move(r.prompt);
  waiting_.insert(s.key);
  seqs_.emplace(r.seq_id, std::move(s));
}

void Scheduler::abort(uint64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  free_seq(it->second);
  if (!it->second.running) waiting_.erase(it->second.key);
  if (it->second.announced) ended_.push_back(seq_id);
  seqs_.erase(it);
}

// Gives back s's blocks, tail first so that the tail is evicted before the (more shareable)
// head, and takes s off the running queue. The caller decides where s goes next.
void Scheduler::free_seq(Sequence& s) {
  for (auto b = s.blocks.rbegin(); b != s.blocks.rend(); ++b) alloc_of(s).release(*b);
  s.blocks.clear();
  s.hashes.clear();
  s.num_computed = 0;
  if (s.running) std::erase(running_, s.id());
}

// Registers the full blocks s has computed so that later sequences can share them. Called only
// after the step that wrote them ran: a block is never read by one chunk while another writes it.
void Scheduler::register_full_blocks(Sequence& s) {
  if (!cfg_.enable_prefix_caching) return;
  const int bs = cfg_.block_size;
  const auto full = static_cast<size_t>(s.num_computed / bs);
  while (s.hashes.size() < full) {
    const size_t i = s.hashes.size();
    const uint64_t parent = i == 0 ? kv_cache::kRootHash : s.hashes.back();
    const uint64_t h =
        kv_cache::block_hash(parent, std::span<const int32_t>(s.tokens).subspan(
                                         i * static_cast<size_t>(bs), static_cast<size_t>(bs)));
    alloc_of(s).cache_block(s.blocks[i], h);
    s.hashes.push_back(h);
  }
}

std::vector<FinishedSeq> Scheduler::on_step_done(
    const std::vector<std::pair<uint64_t, int32_t>>& sampled) {
  if (flights_.empty()) fail(ErrorCode::kInvalidArgument, "on_step_done() with no plan in flight");
  const Flight& flight = flights_.front();
  std::unordered_set<uint64_t> got;
  for (const auto& [id, tok] : sampled) {
    if (!seqs_.contains(id)) continue;  // aborted while the step ran
    if (!flight.expect_sample.contains(id) || !got.insert(id).second)
      fail(ErrorCode::kInvalidArgument, "sampled token for sequence ", id,
           " that had no sample chunk in the plan (or a second one)");
  }
  for (uint64_t id : flight.expect_sample)
    if (seqs_.contains(id) && !got.contains(id))
      fail(ErrorCode::kInvalidArgument, "no sampled token for sequence ", id);
  for (uint64_t id : flight.seqs) {
    busy_.erase(id);
    auto it = seqs_.find(id);
    if (it != seqs_.end() && it->second.running) register_full_blocks(it->second);
  }
  std::vector<FinishedSeq> finished;
  for (const auto& [id, tok] : sampled) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;
    Sequence& s = it->second;
    s.tokens.push_back(tok);
    // A stop token wins over the length limit when both apply (as in vLLM and OpenAI).
    if (std::find(s.stop_token_ids.begin(), s.stop_token_ids.end(), tok) !=
        s.stop_token_ids.end()) {
      finished.push_back({id, FinishCause::kStopToken});
    } else if (s.num_generated() >= s.max_tokens) {
      finished.push_back({id, FinishCause::kLength});
    } else {
      continue;
    }
    abort(id);
  }
  flights_.pop_front();
  return finished;
}

std::vector<uint64_t> Scheduler::on_step_failed() {
  if (flights_.empty())
    fail(ErrorCode::kInvalidArgument, "on_step_failed() with no plan in flight");
  std::vector<uint64_t> seqs = std::move(flights_.front().seqs);
  flights_.pop_front();
  for (uint64_t id : seqs) {
    busy_.erase(id);
    abort(id);
  }
  return seqs;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = counters_;
  s.running = static_cast<int>(running_.size());
  s.waiting = static_cast<int>(waiting_.size());
  for (const auto& a : allocs_) {  // the group's blocks: every attention rank's
    s.used_blocks += a.num_used();
    s.cached_blocks += a.num_cached();
    s.free_blocks += a.num_free() - a.num_cached();
    s.total_blocks += a.num_blocks();
  }
  return s;
}

std::string Scheduler::check_invariants() const {
  std::ostringstream err;
  const int bs = cfg_.block_size;
  // held[rank][block]: holders of each block of each attention rank.
  std::vector<std::vector<int>> held(allocs_.size());
  for (size_t r = 0; r < allocs_.size(); ++r)
    held[r].assign(static_cast<size_t>(allocs_[r].num_blocks()), 0);
  size_t n_running = 0;
  for (const auto& [id, s] : seqs_) {
    if (!s.running) {
      if (!s.blocks.empty() || s.num_computed != 0) err << "waiting seq " << id << " holds KV; ";
      if (!waiting_.contains(s.key)) err << "seq " << id << " in no queue; ";
      continue;
    }
    ++n_running;
    if (static_cast<int>(s.blocks.size()) != blocks_for(s.num_computed, bs))
      err << "seq " << id << " has " << s.blocks.size() << " blocks for " << s.num_computed
          << " tokens; ";
    if (!busy_.contains(id) && s.num_computed >= s.len())
      err << "seq " << id << " has no token to feed; ";
    if (static_cast<int>(s.hashes.size()) > s.num_computed / bs)
      err << "seq " << id << " hashed a block it has not filled; ";
    if (s.attention_rank < 0 || s.attention_rank >= static_cast<int>(allocs_.size())) {
      err << "running seq " << id << " has attention rank " << s.attention_rank << "; ";
      continue;
    }
    for (int32_t b : s.blocks)
      ++held[static_cast<size_t>(s.attention_rank)][static_cast<size_t>(b)];
  }
  if (n_running != running_.size() || seqs_.size() != n_running + waiting_.size())
    err << "queues disagree with sequences; ";
  if (static_cast<int>(running_.size()) > cfg_.max_num_seqs) err << "too many running; ";
  for (size_t r = 0; r < allocs_.size(); ++r) {
    const kv_cache::BlockAllocator& a = allocs_[r];
    int used = 0;
    for (int32_t b = 0; b < a.num_blocks(); ++b) {
      const int h = held[r][static_cast<size_t>(b)];
      used += h > 0;
      if (a.refcount(b) != h)
        err << "rank " << r << " block " << b << " refcount " << a.refcount(b) << " but " << h
            << " holders; ";
    }
    if (used != a.num_used())
      err << "rank " << r << " allocator counts " << a.num_used() << " used, " << used << " held; ";
  }
  // Shared blocks must be full, hashed and behind every holder's write position.
  for (const auto& [id, s] : seqs_)
    for (size_t i = 0; i < s.blocks.size(); ++i)
      if (held[static_cast<size_t>(std::max(0, s.attention_rank))]
              [static_cast<size_t>(s.blocks[i])] > 1 &&
          (i >= s.hashes.size() || !alloc_of(s).has_hash(s.blocks[i])))
        err << "seq " << id << " shares unfinished block " << s.blocks[i] << "; ";
  return err.str();
}

}  // namespace tessera::scheduler
