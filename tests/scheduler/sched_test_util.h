// Test helpers for the scheduler: a fake model that samples deterministic tokens, so that a test
// can drive schedule() -> on_step_done() loops and know every token in advance.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "tessera/scheduler/scheduler.h"

namespace tessera::scheduler::testing {

// The token the fake model samples for sequence `id` after `len` known tokens.
inline int32_t fake_token(uint64_t id, size_t len) {
  return static_cast<int32_t>((id * 7919 + len * 104729) % 50000);
}

inline std::vector<int32_t> iota_prompt(int n, int32_t first = 1) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<size_t>(i)] = first + i;
  return p;
}

struct StepOutcome {
  StepPlan plan;
  std::vector<uint64_t> finished;
};

// One engine iteration with the fake model.
inline StepOutcome run_step(Scheduler& s) {
  StepOutcome out;
  out.plan = s.schedule();
  std::vector<std::pair<uint64_t, int32_t>> sampled;
  for (const protocol::ExecuteChunk& c : out.plan.chunks)
    if (c.sample)
      sampled.emplace_back(
          c.seq_id, fake_token(c.seq_id, static_cast<size_t>(c.start_pos) + c.tokens.size()));
  if (!out.plan.empty())
    for (const FinishedSeq& f : s.on_step_done(sampled)) out.finished.push_back(f.seq_id);
  return out;
}

inline const protocol::ExecuteChunk* find_chunk(const StepPlan& p, uint64_t id) {
  for (const protocol::ExecuteChunk& c : p.chunks)
    if (c.seq_id == id) return &c;
  return nullptr;
}

inline std::vector<int> chunk_sizes(const StepPlan& p) {
  std::vector<int> v;
  for (const protocol::ExecuteChunk& c : p.chunks) v.push_back(static_cast<int>(c.tokens.size()));
  return v;
}

}  // namespace tessera::scheduler::testing
