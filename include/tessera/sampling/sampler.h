// Sampling: one sequence's sampling state, turned into one row of the sampling op per step. The
// order follows vLLM/HF: the grammar's allowed-token mask (when the sequence is constrained) →
// logit bias → repetition penalty (prompt + output) → presence/frequency penalties (output) →
// logprobs are taken here (the model's distribution after those adjustments) → temperature →
// top-k → top-p → min-p → draw. Temperature 0 is greedy. The arithmetic is ops::sample's
// (ops/sample.h), which runs on the logits' device; a Sampler keeps what lives across steps: its
// RNG (seeded per request: the same seed gives the same output, on every device), the prompt's
// tokens and the counts of its output's. One sequence, one Sampler, one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tessera/ops/sample.h"

namespace tessera::sampling {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int top_k = 0;                    // <= 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off; > 1 discourages tokens seen in prompt or output
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::optional<uint64_t> seed;
  int top_logprobs = 0;  // how many alternatives to report (0: none)
  bool logprobs = false;
  // Constrained decoding: GBNF text (grammar module) the output must match; empty: none. The
  // worker compiles it and passes the allowed-token mask to sample().
  std::string grammar;
};

inline constexpr int kMaxTopLogprobs = 20;  // alternatives the sampler reports at most

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;           // of the chosen token (when logprobs requested)
  std::vector<TokenLogprob> top;  // top_logprobs alternatives, most likely first
};

class Sampler {
 public:
  // Trusts params validated by the engine; throws kInternal only for what would index outside
  // its arrays (a corrupt plan).
  Sampler(SamplingParams params, int vocab_size);
  // Records prompt tokens (for the repetition penalty).
  void set_prompt(std::span<const int32_t> prompt);
  // This step's row of the sampling op: the knobs, a fresh uniform draw (when temperature > 0),
  // the logit edits (bias and penalties) and `allowed` (a bitmask over the vocabulary with at
  // least one bit set; empty: every token) as its mask.
  ops::SampleRow next_row(std::span<const uint64_t> allowed = {});
  // Records the token the op chose for this sequence (its penalties count it from now on).
  void accept(int32_t token);
  // The op's output row (tokens, logprobs: 1 + max_top columns) as this sequence's result.
  SampleResult result(const int32_t* tokens, const float* logprobs) const;
  // next_row, ops::sample of `logits` (vocab_size floats; modified in place) on the CPU, accept:
  // the whole step for one host row.
  SampleResult sample(std::span<float> logits, std::span<const uint64_t> allowed = {});
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  int vocab_size_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> output_counts_;
  std::vector<int32_t> prompt_tokens_;  // distinct, ascending

  double uniform();  // [0, 1), reproducible across platforms for one binary
};

}  // namespace tessera::sampling
