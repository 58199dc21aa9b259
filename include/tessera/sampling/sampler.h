// Sampling: turns one row of logits into the next token for one sequence. The order follows
// vLLM/HF: the grammar's allowed-token mask (when the sequence is constrained) → logit bias →
// repetition penalty (prompt + output) → presence/frequency penalties (output) → logprobs are taken
// here (the model's distribution after those adjustments) → temperature → top-k → top-p → min-p →
// draw. Temperature 0 is greedy. Each Sampler owns its RNG (seeded per request: the same seed gives
// the same output); one sequence, one Sampler, one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

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
  // Samples from `logits` (vocab_size floats; modified in place) and records the token. With
  // `allowed` (a bitmask over the vocabulary with at least one bit set), only those tokens can be
  // drawn: the others are set to -inf before anything else.
  SampleResult sample(std::span<float> logits, std::span<const uint64_t> allowed = {});
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  int vocab_size_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> output_counts_;
  std::vector<uint8_t> seen_in_prompt_;
  std::vector<std::pair<float, int32_t>> scratch_;
  std::vector<double> weights_;  // sample_scaled's per-candidate weights, reused

  double uniform();  // [0, 1), reproducible across platforms for one binary
  int32_t sample_scaled(std::span<const float> logits, bool masked);  // temperature > 0
};

// log-softmax of a row, in double for stability; used by logprobs and tests.
std::vector<float> log_softmax(std::span<const float> logits);

}  // namespace tessera::sampling
