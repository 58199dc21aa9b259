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

// Temperature sampling over the allowed tokens, truncated by top-k, top-p and min-p (in that
// order, as vLLM applies them), all on probabilities renormalised over the survivors.
//
// The candidates are ranked by logit (ties to the lower id) only as far as a truncation needs:
// with no top-p/min-p and no top-k, no order is needed at all (the inverse-CDF walk over the
// tokens in id order draws from the same distribution), so a row costs one pass of exp instead
// of a sort of the whole vocabulary (6 ms at 49k tokens); top-k sorts its k; top-p and min-p sort
// a prefix of 256 and grow it 8x only while the kept mass or the min-p floor reaches past it.
int32_t Sampler::sample_scaled(std::span<const float> logits, bool masked) {
  const auto& p = params_;
  auto& cand = scratch_;
  cand.clear();
  // Masked-out tokens are never candidates (a zero-probability tail could otherwise be drawn by
  // rounding), so top-k counts only allowed tokens.
  for (int32_t i = 0; i < vocab_size_; ++i)
    if (!masked || std::isfinite(logits[static_cast<size_t>(i)]))
      cand.emplace_back(logits[static_cast<size_t>(i)], i);
  const size_t n = cand.size();
  const size_t k = p.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p.top_k), n) : n;
  const bool truncates = p.top_p < 1.0f || p.min_p > 0.0f;
  const auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  float mx = cand[0].first;
  for (const auto& c : cand) mx = std::max(mx, c.first);
  const auto weight = [&](float logit) { return std::exp((logit - mx) / p.temperature); };

  if (k == n && !truncates) {  // plain temperature: no ranking needed
    auto& w = weights_;
    w.resize(n);
    double mass = 0.0;
    for (size_t i = 0; i < n; ++i) mass += w[i] = weight(cand[i].first);
    double r = uniform() * mass;
    for (size_t i = 0; i < n; ++i) {
      r -= w[i];
      if (r < 0) return cand[i].second;
    }
    return cand.back().second;  // r rounded past the end: the last token
  }

  // The top-k survivors' total weight, over all of them (unordered) when top-k keeps everything.
  size_t sorted = k < n ? k : std::min<size_t>(256, n);
  std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(sorted), cand.end(), better);
  double total = 0.0;
  for (size_t i = 0; i < k; ++i) total += weight(cand[i].first);
  // keep = the length of the ranked prefix that top-p and min-p leave (at least one token).
  size_t keep = k;
  for (;;) {
    size_t i = 0;
    double cum = 0.0;
    const double floor = p.min_p * (weight(cand[0].first) / total);
    bool decided = false;
    for (; i < sorted; ++i) {
      const double pr = weight(cand[i].first) / total;
      if (i > 0 && p.min_p > 0.0f && pr < floor) {  // min-p drops it and everything after
        keep = i;
        decided = true;
        break;
      }
      cum += pr;
      if (p.top_p < 1.0f && cum >= p.top_p) {  // smallest prefix whose mass reaches top_p
        keep = i + 1;
        decided = true;
        break;
      }
    }
    if (decided || sorted == k) {
      if (!decided) keep = k;
      break;
    }
    const size_t more = std::min(k, sorted * 8);  // the cut lies further down: rank more
    std::partial_sort(cand.begin() + static_cast<long>(sorted),
                      cand.begin() + static_cast<long>(more), cand.end(), better);
    sorted = more;
  }
  double mass = 0.0;
  for (size_t i = 0; i < keep; ++i) mass += weight(cand[i].first);
  double r = uniform() * mass;
  for (size_t i = 0; i < keep; ++i) {
    r -= weight(cand[i].first);
    if (r < 0) return cand[i].second;
  }
  return cand[keep - 1].second;
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
    logits[static_cast<size_t>(t)] -=
        p.presence_penalty + p.frequency_penalty * static_cast<float>(n);

  std::vector<float> lp;
  if (p.logprobs || p.top_logprobs > 0) lp = log_softmax(logits);

  int32_t chosen = 0;
  if (p.temperature == 0.0f) {
    chosen = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    chosen = sample_scaled(logits, masked);
  }

  SampleResult res;
  res.token = chosen;
  if (!lp.empty()) {
    res.logprob = lp[static_cast<size_t>(chosen)];
    if (p.top_logprobs > 0) {
      std::vector<int32_t> idx(lp.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
      const size_t n = std::min<size_t>(static_cast<size_t>(p.top_logprobs), idx.size());
      std::partial_sort(
          idx.begin(), idx.begin() + static_cast<long>(n), idx.end(), [&](int32_t a, int32_t b) {
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
