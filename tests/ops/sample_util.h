// Helpers for the sampling op's tests: random rows that reach every rule (greedy, temperature,
// top-k, top-p, min-p, edits, masks, logprobs), and one run of ops::sample on a device with the
// results copied back.
#pragma once

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "tessera/ops/backend.h"
#include "tessera/ops/sample.h"
#include "test_util.h"

namespace tessera::ops::test {

struct SampleOut {
  Tensor logits;  // adjusted, [rows, vocab]
  Tensor tokens;
  Tensor logprobs;
};

// ops::sample of host `logits` and `rows` with every tensor on `alloc`'s device (ref::sample on
// the host when `reference`).
inline SampleOut run_sample(const Tensor& logits, const std::vector<SampleRow>& rows,
                            const std::shared_ptr<Allocator>& alloc, bool reference = false) {
  const int vocab = static_cast<int>(logits.dim(1));
  SampleBatch batch(vocab);
  for (const auto& r : rows) batch.add(r);
  const int64_t n = static_cast<int64_t>(rows.size()), cols = batch.max_top() + 1;
  Tensor l = to_device(clone(logits), alloc);  // the op edits it; to_device may not copy
  Tensor tokens = Tensor::empty({n, cols}, DType::kI32, alloc);
  Tensor logprobs = Tensor::empty({n, cols}, DType::kF32, alloc);
  const SampleMeta meta = batch.upload(alloc);
  if (reference)
    ref::sample(l, meta, tokens, logprobs);
  else
    ops::sample(l, meta, tokens, logprobs);
  return {to_host(l), to_host(tokens), to_host(logprobs)};
}

// Uniform draws for the helpers below.
struct SampleRng {
  std::mt19937& g;
  int randint(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
};

// Random logits (N(0, 3)) with planted ties: equal values at different ids, so the rank order's
// tie rule (lower id first) decides cuts.
inline Tensor sample_logits(std::mt19937& g, int rows, int vocab) {
  SampleRng t{g};
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> v(static_cast<size_t>(rows) * vocab);
  for (float& x : v) x = normal(g);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 3; ++k) {
      float* row = v.data() + static_cast<size_t>(r) * vocab;
      row[t.randint(0, vocab - 1)] = row[t.randint(0, vocab - 1)];
    }
  return Tensor::from_floats(v, {rows, vocab});
}

// A row drawing each knob from values that matter, including extremes (top_k beyond the
// vocabulary, top_p of 1e-6, a mask of one token).
inline SampleRow random_sample_row(std::mt19937& g, int vocab) {
  SampleRng t{g};
  const auto pick = [&](std::initializer_list<double> v) {
    return *(v.begin() + t.randint(0, static_cast<int>(v.size()) - 1));
  };
  SampleRow r;
  r.temperature = static_cast<float>(pick({0.0, 0.5, 1.0, 1.7}));
  r.top_k = static_cast<int>(pick({0, 0, 1, 5, 50, static_cast<double>(vocab) + 10}));
  r.top_p = static_cast<float>(pick({1.0, 1.0, 0.9, 0.3, 1e-6}));
  r.min_p = static_cast<float>(pick({0.0, 0.0, 0.05, 0.5}));
  r.repetition_penalty = static_cast<float>(pick({1.0, 1.3}));
  r.u = t.uniform(0.0f, 1.0f);
  if (r.u >= 1.0) r.u = 0.0;
  r.logprobs = t.randint(0, 1) == 1;
  r.top_logprobs = t.randint(0, 3) == 0 ? t.randint(0, kMaxSampleTop) : 0;
  std::vector<int32_t> toks;
  for (int i = 0, n = t.randint(0, 12); i < n; ++i) toks.push_back(t.randint(0, vocab - 1));
  std::sort(toks.begin(), toks.end());
  toks.erase(std::unique(toks.begin(), toks.end()), toks.end());
  for (int32_t tok : toks)
    r.edits.push_back({.token = tok,
                       .bias = t.randint(0, 1) ? t.uniform(-5.0f, 5.0f) : 0.0f,
                       .penalise = t.randint(0, 1) == 1,
                       .subtract = t.randint(0, 1) ? t.uniform(0.0f, 2.0f) : 0.0f});
  if (t.randint(0, 3) == 0) {
    r.allowed.assign((static_cast<size_t>(vocab) + 63) / 64, 0);
    const int allowed = t.randint(0, 1) ? t.randint(1, 3) : vocab / 2;
    for (int i = 0; i < allowed; ++i) {
      const auto tok = static_cast<uint32_t>(t.randint(0, vocab - 1));
      r.allowed[tok >> 6] |= uint64_t{1} << (tok & 63);
    }
  }
  return r;
}

}  // namespace tessera::ops::test
