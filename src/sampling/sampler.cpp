#include "tessera/sampling/sampler.h"

#include <algorithm>

#include "tessera/core/error.h"

namespace tessera::sampling {

static_assert(kMaxTopLogprobs == ops::kMaxSampleTop);

Sampler::Sampler(SamplingParams params, int vocab_size)
    : params_(std::move(params)),
      vocab_size_(vocab_size),
      rng_(params_.seed ? *params_.seed : std::random_device{}()) {
  // The engine validated the request (engine/request_check.h: every range, the vocabulary); only
  // what would index outside this sampler's arrays is checked again, as a corrupt plan.
  for (const auto& [tok, bias] : params_.logit_bias)
    if (tok < 0 || tok >= vocab_size)
      fail(ErrorCode::kInternal, "corrupt sampling params: logit_bias token ", tok,
           " outside the vocabulary of ", vocab_size);
  if (params_.top_logprobs < 0 || params_.top_logprobs > kMaxTopLogprobs)
    fail(ErrorCode::kInternal, "corrupt sampling params: top_logprobs ", params_.top_logprobs);
}

void Sampler::set_prompt(std::span<const int32_t> prompt) {
  prompt_tokens_.clear();
  for (int32_t t : prompt)
    if (t >= 0 && t < vocab_size_) prompt_tokens_.push_back(t);
  std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
  prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                       prompt_tokens_.end());
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

// One edit per token (the op applies them in parallel): the bias entries, the prompt's and the
// output's tokens under a repetition penalty, the output's under presence/frequency penalties,
// merged by token.
ops::SampleRow Sampler::next_row(std::span<const uint64_t> allowed) {
  const auto& p = params_;
  ops::SampleRow row{.temperature = p.temperature,
                     .top_k = p.top_k,
                     .top_p = p.top_p,
                     .min_p = p.min_p,
                     .repetition_penalty = p.repetition_penalty,
                     .u = p.temperature > 0.0f ? uniform() : 0.0,
                     .logprobs = p.logprobs,
                     .top_logprobs = p.top_logprobs};
  auto& e = row.edits;
  for (const auto& [tok, bias] : p.logit_bias) e.push_back({.token = tok, .bias = bias});
  const bool repeat = p.repetition_penalty != 1.0f;
  if (repeat)
    for (int32_t t : prompt_tokens_) e.push_back({.token = t, .penalise = true});
  const bool counted = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (repeat || counted)
    for (const auto& [t, n] : output_counts_)
      e.push_back(
          {.token = t,
           .penalise = repeat,
           .subtract =
               counted ? p.presence_penalty + p.frequency_penalty * static_cast<float>(n) : 0.0f});
  std::stable_sort(e.begin(), e.end(),
                   [](const auto& a, const auto& b) { return a.token < b.token; });
  size_t out = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    if (out > 0 && e[out - 1].token == e[i].token) {
      auto& m = e[out - 1];
      m.bias += e[i].bias;
      m.penalise = m.penalise || e[i].penalise;
      m.subtract += e[i].subtract;
    } else {
      e[out++] = e[i];
    }
  }
  e.resize(out);
  row.allowed.assign(allowed.begin(), allowed.end());
  return row;
}

void Sampler::accept(int32_t token) { ++output_counts_[token]; }

SampleResult Sampler::result(const int32_t* tokens, const float* logprobs) const {
  SampleResult res;
  res.token = tokens[0];
  res.logprob = logprobs[0];
  for (int j = 0; j < params_.top_logprobs; ++j)
    if (tokens[1 + j] >= 0) res.top.push_back({tokens[1 + j], logprobs[1 + j]});
  return res;
}

SampleResult Sampler::sample(std::span<float> logits, std::span<const uint64_t> allowed) {
  TESSERA_CHECK(static_cast<int>(logits.size()) == vocab_size_, "logits of size ", logits.size());
  ops::SampleBatch batch(vocab_size_);
  batch.add(next_row(allowed));
  const int cols = batch.max_top() + 1;
  Tensor row = Tensor::from_storage(
      Storage::borrow(logits.data(), logits.size_bytes(), nullptr, Device::cpu()), 0,
      {1, vocab_size_}, DType::kF32);
  Tensor tokens = Tensor::empty({1, cols}, DType::kI32);
  Tensor logprobs = Tensor::empty({1, cols}, DType::kF32);
  ops::sample(row, batch.upload(default_allocator(Device::cpu())), tokens, logprobs);
  SampleResult res = result(tokens.data_as<int32_t>(), logprobs.data_as<float>());
  accept(res.token);
  return res;
}

}  // namespace tessera::sampling
