#include "tessera/sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "tessera/core/error.h"

namespace tessera::sampling {
namespace {

std::vector<float> random_logits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(Sampler, GrammarMaskAppliesBeforeEverythingElse) {
  // Random masks over random logits: greedy picks the best allowed token, and no combination of
  // temperature, top-k, top-p, bias or penalties ever draws a masked-out one.
  std::mt19937 rng(3);
  const int n = 300;
  for (int round = 0; round < 200; ++round) {
    std::vector<uint64_t> mask((n + 63) / 64, 0);
    const int allowed = 1 + round % 7;
    for (int k = 0; k < allowed; ++k) {
      auto t = static_cast<uint32_t>(std::uniform_int_distribution<int>(0, n - 1)(rng));
      mask[t >> 6] |= uint64_t{1} << (t & 63);
    }
    auto is_allowed = [&](int32_t t) {
      return (mask[static_cast<uint32_t>(t) >> 6] >> (t & 63)) & 1;
    };
    auto logits = random_logits(n, static_cast<uint32_t>(round));
    SamplingParams p{.temperature = round % 3 == 0 ? 0.0f : 1.5f,
                     .top_k = round % 4 == 0 ? 2 : 0,
                     .top_p = round % 5 == 0 ? 0.5f : 1.0f,
                     .presence_penalty = 0.5f,
                     .logit_bias = {{static_cast<int32_t>(round % n), 100.0f}}};
    p.seed = static_cast<uint64_t>(round);
    Sampler smp(p, n);
    for (int draw = 0; draw < 5; ++draw) {
      auto copy = logits;
      int32_t t = smp.sample(copy, mask).token;
      EXPECT_TRUE(is_allowed(t)) << "round " << round << " drew masked token " << t;
    }
    if (p.temperature == 0.0f && p.logit_bias[0].first >= 0 && !is_allowed(p.logit_bias[0].first)) {
      int32_t best = -1;
      for (int32_t t = 0; t < n; ++t)
        if (is_allowed(t) &&
            (best < 0 || logits[static_cast<size_t>(t)] > logits[static_cast<size_t>(best)]))
          best = t;
      Sampler fresh({.temperature = 0.0f}, n);
      auto copy = logits;
      EXPECT_EQ(fresh.sample(copy, mask).token, best);
    }
  }
}

TEST(Sampler, GreedyIsArgmax) {
  for (uint32_t s = 0; s < 20; ++s) {
    auto l = random_logits(1000, std::random_device{}());
    Sampler smp({.temperature = 0.0f}, 1000);
    auto copy = l;
    EXPECT_EQ(smp.sample(copy).token, argmax(l));
  }
}

TEST(Sampler, SameSeedSameOutputDifferentSeedDiffers) {
  auto run = [](uint64_t seed) {
    Sampler smp({.temperature = 1.0f, .seed = seed}, 500);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = random_logits(500, static_cast<uint32_t>(i));
      out.push_back(smp.sample(l).token);
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  auto l = random_logits(300, std::random_device{}());
  for (int i = 0; i < 20; ++i) {
    Sampler smp({.temperature = 5.0f, .top_k = 1}, 300);
    auto c = l;
    EXPECT_EQ(smp.sample(c).token, argmax(l));
  }
}

// Draw many times from a 4-token distribution and compare frequencies with the truncated,
// renormalised probabilities (4 sigma of a binomial with 40000 draws).
void expect_distribution(const SamplingParams& p, const std::vector<float>& logits,
                         const std::vector<double>& expected) {
  Sampler smp(p, static_cast<int>(logits.size()));
  std::map<int32_t, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    auto c = logits;
    ++counts[smp.sample(c).token];
  }
  for (size_t t = 0; t < expected.size(); ++t) {
    const double f = counts[static_cast<int32_t>(t)] / static_cast<double>(n);
    const double sigma = std::sqrt(expected[t] * (1 - expected[t]) / n) + 1e-9;
    EXPECT_NEAR(f, expected[t], 4 * sigma + 1e-12) << "token " << t;
  }
}

TEST(Sampler, TemperatureTopPMinPDistributions) {
  // probabilities at T=1: 0.5, 0.25, 0.125, 0.125
  const std::vector<float> l{std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f)};
  expect_distribution({.temperature = 1.0f, .seed = 1}, l, {0.5, 0.25, 0.125, 0.125});
  // top_p 0.7: 0.5 + 0.25 reaches it, so two tokens remain, renormalised to 2/3, 1/3.
  expect_distribution({.temperature = 1.0f, .top_p = 0.7f, .seed = 2}, l, {2. / 3, 1. / 3, 0, 0});
  // min_p 0.3: tokens under 0.3 * 0.5 = 0.15 are dropped.
  expect_distribution({.temperature = 1.0f, .min_p = 0.3f, .seed = 3}, l, {2. / 3, 1. / 3, 0, 0});
  // T=2 flattens: p ∝ sqrt(p1).
  const double a = std::sqrt(0.5), b = std::sqrt(0.25), c = std::sqrt(0.125), z = a + b + 2 * c;
  expect_distribution({.temperature = 2.0f, .seed = 4}, l, {a / z, b / z, c / z, c / z});
  expect_distribution({.temperature = 1.0f, .top_k = 2, .seed = 5}, l, {2. / 3, 1. / 3, 0, 0});
}

// The highest token id drawn in 3000 samples.
int max_drawn(const SamplingParams& p, const std::vector<float>& logits) {
  Sampler smp(p, static_cast<int>(logits.size()));
  int hi = 0;
  for (int i = 0; i < 3000; ++i) {
    auto c = logits;
    hi = std::max(hi, smp.sample(c).token);
  }
  return hi;
}

// top-p and min-p rank only a prefix of the candidates and grow it while the cut lies past it:
// on nearly flat logits over 3000 tokens the kept sets (1500 and ~1054 tokens) reach far past the
// first ranked prefix, and nothing outside them is ever drawn.
TEST(Sampler, TopPAndMinPCutsFarDownTheRanking) {
  const int n = 3000;
  const std::vector<float> flat(n, 0.0f);
  // Equal logits rank by id: top_p 0.5 keeps ids 0..1499 (1500 x 1/3000 reaches 0.5; one more if
  // the running sum rounds under it), drawn from the whole kept set, far past 256.
  int hi = max_drawn({.temperature = 1.0f, .top_p = 0.5f, .seed = 11}, flat);
  EXPECT_LE(hi, 1500);
  EXPECT_GT(hi, 1400);
  // logit -i * 1e-4: min_p 0.9 keeps the tokens with exp(-i * 1e-4) >= 0.9, i <= 1053.
  std::vector<float> slope(n);
  for (int i = 0; i < n; ++i) slope[static_cast<size_t>(i)] = -1e-4f * static_cast<float>(i);
  hi = max_drawn({.temperature = 1.0f, .min_p = 0.9f, .seed = 12}, slope);
  EXPECT_LE(hi, 1054);
  EXPECT_GT(hi, 950);
  // top_k 700 with top_p 0.9 of it: 630 tokens.
  hi = max_drawn({.temperature = 1.0f, .top_k = 700, .top_p = 0.9f, .seed = 13}, flat);
  EXPECT_LE(hi, 630);
  EXPECT_GT(hi, 550);
}

TEST(Sampler, PenaltiesAndBias) {
  // Repetition penalty divides positive logits of seen tokens and multiplies negative ones.
  Sampler rep({.temperature = 0.0f, .repetition_penalty = 2.0f}, 3);
  std::vector<int32_t> prompt{0};
  rep.set_prompt(prompt);
  std::vector<float> l{3.0f, 2.0f, -1.0f};
  EXPECT_EQ(rep.sample(l).token, 1);  // 3/2 = 1.5 < 2
  EXPECT_FLOAT_EQ(l[0], 1.5f);

  // Presence/frequency apply to generated tokens only: after emitting token 0 twice, its
  // logit drops by presence + 2 * frequency.
  Sampler pf({.temperature = 0.0f, .presence_penalty = 0.5f, .frequency_penalty = 0.4f}, 2);
  std::vector<float> a{1.0f, 0.0f};
  EXPECT_EQ(pf.sample(a).token, 0);
  std::vector<float> b{1.0f, 0.0f};
  EXPECT_EQ(pf.sample(b).token, 0);  // 1 - 0.9 = 0.1 > 0
  std::vector<float> c{1.0f, 0.0f};
  EXPECT_EQ(pf.sample(c).token, 1);  // 1 - 0.5 - 0.8 = -0.3 < 0
  EXPECT_FLOAT_EQ(c[0], -0.3f);

  Sampler bias({.temperature = 0.0f, .logit_bias = {{0, -100.0f}}}, 2);
  std::vector<float> d{5.0f, 0.0f};
  EXPECT_EQ(bias.sample(d).token, 1);
}

TEST(Sampler, LogprobsAreNormalisedAndSorted) {
  auto l = random_logits(2000, std::random_device{}());
  Sampler smp({.temperature = 0.0f, .top_logprobs = 5, .logprobs = true}, 2000);
  auto c = l;
  auto r = smp.sample(c);
  ASSERT_EQ(r.top.size(), 5u);
  EXPECT_EQ(r.top[0].token, r.token);
  for (size_t i = 1; i < r.top.size(); ++i) EXPECT_GE(r.top[i - 1].logprob, r.top[i].logprob);
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x));
  EXPECT_NEAR(r.logprob, l[static_cast<size_t>(r.token)] - std::log(z), 1e-4);
}

// Requests are validated once, by the engine (engine/request_check.h); the sampler only refuses
// what would index outside its arrays, as a corrupt plan (kInternal), never a client error.
TEST(Sampler, RefusesOnlyWhatWouldIndexOutOfBounds) {
  try {
    Sampler s({.logit_bias = {{10, 1.0f}}}, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("logit_bias"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Sampler({.logit_bias = {{-1, 1.0f}}}, 10), Error);
  EXPECT_THROW(Sampler({.top_logprobs = 21}, 10), Error);
  EXPECT_NO_THROW(Sampler({.top_p = 0.5f, .top_logprobs = 20}, 10));
}

}  // namespace
}  // namespace tessera::sampling
