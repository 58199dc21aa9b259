#include "tessera/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tessera/core/error.h"

namespace tessera::sampling {

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
  seen_in_prompt_.assign(static_cast<size_t>(vocab_size_), 0);
  for (int32_t t : prompt)
    if (t >= 0 && t < vocab_size_) seen_in_prompt_[static_cast<size_t>(t)] = 1;
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

std::vector<float> log_softmax(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  std::vector<float> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(logits[i] - lse);
  return out;
}

SampleResult Sampler::sample(std::span<float> logits, std::span<const uint64_t> allowed) {
  TESSERA_CHECK(static_cast<int>(logits.size()) == vocab_size_, "logits of size ", logits.size());
  const auto& p = params_;
  const bool masked = !allowed.empty();
  if (masked) {
    TESSERA_CHECK(allowed.size() * 64 >= logits.size(), "mask of ", allowed.size(), " words");
    bool any = false;
    for (size_t i = 0; i < logits.size(); ++i) {
      if ((allowed[i >> 6] >> (i & 63)) & 1)
        any = true;
      else
        logits[i] = -std::numeric_limits<float>::infinity();
    }
    TESSERA_CHECK(any, "a grammar mask that allows no token");
  }
  for (const auto& [tok, bias] : p.logit_bias) logits[static_cast<size_t>(tok)] += bias;
  if (p.repetition_penalty != 1.0f) {
    auto penalise = [&](int32_t t) {
      float& l = logits[static_cast<size_t>(t)];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    };
    for (int32_t t = 0; t < static_cast<int32_t>(seen_in_prompt_.size()); ++t)
      if (seen_in_prompt_[static_cast<size_t>(t)] && !output_counts_.contains(t)) penalise(t);
    for (const auto& [t, n] : output_counts_) penalise(t);
  }
  for (const auto& [t, n] : output_counts_)
    logits[static_cast<size_t>(t)] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(n);

  std::vector<float> lp;
  if (p.logprobs || p.top_logprobs > 0) lp = log_softmax(logits);

  int32_t chosen = 0;
  if (p.temperature == 0.0f) {
    chosen = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    // Candidates sorted by logit, cut by top-k, then scaled by temperature into probabilities.
    auto& cand = scratch_;
    cand.clear();
    // Masked-out tokens are never candidates (a zero-probability tail could otherwise be drawn
    // by rounding), so top-k counts only allowed tokens.
    for (int32_t i = 0; i < vocab_size_; ++i)
      if (!masked || std::isfinite(logits[static_cast<size_t>(i)]))
        cand.emplace_back(logits[static_cast<size_t>(i)], i);
    const size_t k = p.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p.top_k), cand.size()) : cand.size();
    std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(k), cand.end(),
                      [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    cand.resize(k);
    const double mx = cand[0].first;
    std::vector<double> prob(k);
    double sum = 0.0;
    for (size_t i = 0; i < k; ++i) sum += prob[i] = std::exp((cand[i].first - mx) / p.temperature);
    for (auto& x : prob) x /= sum;
    size_t keep = k;
    if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
      double cum = 0.0;
      for (size_t i = 0; i < k; ++i) {
        cum += prob[i];
        if (cum >= p.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    if (p.min_p > 0.0f) {
      const double floor = p.min_p * prob[0];
      size_t i = 1;
      while (i < keep && prob[i] >= floor) ++i;
      keep = i;
    }
    double mass = 0.0;
    for (size_t i = 0; i < keep; ++i) mass += prob[i];
    double r = uniform() * mass;
    chosen = cand[keep - 1].second;
    for (size_t i = 0; i < keep; ++i) {
      r -= prob[i];
      if (r < 0) {
        chosen = cand[i].second;
        break;
      }
    }
  }

  SampleResult res;
  res.token = chosen;
  if (!lp.empty()) {
    res.logprob = lp[static_cast<size_t>(chosen)];
    if (p.top_logprobs > 0) {
      std::vector<int32_t> idx(lp.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
      const size_t n = std::min<size_t>(static_cast<size_t>(p.top_logprobs), idx.size());
      std::partial_sort(idx.begin(), idx.begin() + static_cast<long>(n), idx.end(), [&](int32_t a, int32_t b) {
        return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)] ||
               (lp[static_cast<size_t>(a)] == lp[static_cast<size_t>(b)] && a < b);
      });
      for (size_t i = 0; i < n; ++i) res.top.push_back({idx[i], lp[static_cast<size_t>(idx[i])]});
    }
  }
  ++output_counts_[chosen];
  return res;
}

}  // namespace tessera::sampling
