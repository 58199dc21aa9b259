// RoPE: both pair layouts against a direct complex rotation computed in double, partial rotary
// dims left alone, cpu == ref, and the scaled inverse frequencies against hand-worked numbers.
#include <complex>
#include <cstring>
#include <functional>
#include <span>

#include "test_util.h"

namespace tessera::ops::test {
namespace {

class RopeTest : public SeededTest {};

void expect_bitwise_equal(const Tensor& got, const Tensor& want) {
  ASSERT_EQ(got.nbytes(), want.nbytes());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.nbytes()), 0);
}

TEST_F(RopeTest, MatchesComplexRotation) {
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kNeox}) {
    for (int rot : {64, 32}) {  // full and partial rotary
      SCOPED_TRACE(std::string(style == RopeStyle::kNeox ? "neox" : "interleaved") +
                   " rot=" + std::to_string(rot));
      RopeParams p;
      p.head_dim = 64;
      p.rotary_dim = rot == 64 ? 0 : rot;
      p.theta = 100000.0f;
      p.style = style;
      const int heads = 3, T = 6;
      std::vector<int32_t> pos = {0, 1, 2, 17, randint(0, 200), randint(0, 200)};
      Tensor x = random_f32({T, heads * 64});
      Tensor a = clone(x), b = clone(x);
      ref::rope(a, heads, pos, p);
      ops::rope(b, heads, pos, p);
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < heads; ++h) {
          const float* in = x.data_as<float>() + (t * heads + h) * 64;
          const float* out = a.data_as<float>() + (t * heads + h) * 64;
          const float* fast = b.data_as<float>() + (t * heads + h) * 64;
          for (int i = 0; i < rot / 2; ++i) {
            const int ia = style == RopeStyle::kInterleaved ? 2 * i : i;
            const int ib = style == RopeStyle::kInterleaved ? 2 * i + 1 : i + rot / 2;
            const double theta = std::pow(100000.0, -2.0 * i / rot);
            const std::complex<double> z =
                std::complex<double>(in[ia], in[ib]) * std::polar(1.0, pos[t] * theta);
            // fp32 angle = pos * inv_freq is off by <= pos * 2^-23 rad for pos <= 200 (~3e-5).
            ASSERT_NEAR(out[ia], z.real(), 1e-4 * (1 + std::abs(z))) << t << " " << h << " " << i;
            ASSERT_NEAR(out[ib], z.imag(), 1e-4 * (1 + std::abs(z))) << t << " " << h << " " << i;
          }
          for (int i = rot; i < 64; ++i) ASSERT_EQ(out[i], in[i]);  // beyond rotary_dim
          for (int i = 0; i < 64; ++i) ASSERT_NEAR(fast[i], out[i], 1e-6f) << "cpu vs ref " << i;
        }
    }
  }
}

TEST_F(RopeTest, DefaultAndLinearInvFreq) {
  RopeParams p;
  p.head_dim = 8;
  p.theta = 10000.0f;
  auto inv = rope_inv_freq(p);
  ASSERT_EQ(inv.size(), 4u);
  const float want[4] = {1.0f, 0.1f, 0.01f, 0.001f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], want[i], want[i] * 1e-6f);
  p.linear_factor = 4.0f;  // positions / 4 == frequencies / 4
  inv = rope_inv_freq(p);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], want[i] / 4, want[i] * 1e-6f);
}

TEST_F(RopeTest, Llama3ScalingHandWorked) {
  // theta 10000, dim 8: inv = 1, 0.1, 0.01, 0.001 -> wavelengths 2*pi/inv = 6.28, 62.8, 628.3,
  // 6283.2. With original context 1024, low/high factors 1/4: low_freq_wavelen 1024,
  // high_freq_wavelen 256.
  //  - 6.28 and 62.8 < 256: unchanged.
  //  - 6283.2 > 1024: divided by factor 8 -> 0.000125.
  //  - 628.3 in between: smooth = (1024/628.3185 - 1) / (4 - 1) = 0.2099155;
  //    (1 - smooth) * 0.01 / 8 + smooth * 0.01 = 0.00098761 + 0.00209916 = 0.00308676.
  RopeParams p;
  p.head_dim = 8;
  p.theta = 10000.0f;
  p.llama3_factor = 8.0f;
  p.llama3_low_freq_factor = 1.0f;
  p.llama3_high_freq_factor = 4.0f;
  p.llama3_original_max_position = 1024;
  auto inv = rope_inv_freq(p);
  const float want[4] = {1.0f, 0.1f, 0.00308676f, 0.000125f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], want[i], want[i] * 1e-5f) << i;

  // Llama-3.1-like: theta 500000, factor 32, original 8192 (values from the HF formula).
  p.theta = 500000.0f;
  p.llama3_factor = 32.0f;
  p.llama3_original_max_position = 8192;
  inv = rope_inv_freq(p);
  const float want2[4] = {1.0f, 0.0376060309f, 0.000429556797f, 1.66196747e-06f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], want2[i], want2[i] * 1e-5f) << i;
}

// with_inv_freq stores the frequencies once; every op given the stored copy rotates exactly as
// one computing them per call, and a copy whose fields were edited afterwards is not served the
// stale values.
TEST_F(RopeTest, StoredFrequenciesMatchAndNeverGoStale) {
  RopeParams p;
  p.head_dim = 64;
  p.theta = 100000.0f;
  p.style = RopeStyle::kNeox;
  p.llama3_factor = 8.0f;
  p.llama3_original_max_position = 64;
  const RopeParams stored = with_inv_freq(p);
  ASSERT_TRUE(stored.inv_freq);
  std::vector<float> scratch;
  const std::span<const float> got = rope_frequencies(stored, scratch);
  EXPECT_TRUE(scratch.empty());  // served from the store
  const std::vector<float> want = rope_inv_freq(p);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;

  const int heads = 5, T = 3;
  std::vector<int32_t> pos = {randint(0, 500), randint(0, 500), randint(0, 500)};
  Tensor x = random_f32({T, heads * 64});
  Tensor k = random_f32({T, 2 * 64}), v = random_f32({T, 2 * 64});
  for (const Tensor* in : {&x, &k}) {
    const int h = in == &x ? heads : 2;
    Tensor a = clone(*in), b = clone(*in), c = clone(*in);
    ops::rope(a, h, pos, p);
    ops::rope(b, h, pos, stored);
    ref::rope(c, h, pos, stored);
    expect_bitwise_equal(b, a);
    expect_bitwise_equal(c, a);
  }

  // Edited after storing: each field the frequencies depend on makes the op recompute them.
  auto edits = std::vector<std::function<void(RopeParams&)>>{
      [](RopeParams& q) { q.theta = 10000.0f; },
      [](RopeParams& q) { q.rotary_dim = 32; },
      [](RopeParams& q) { q.linear_factor = 2.0f; },
      [](RopeParams& q) { q.llama3_factor = 0.0f; },
      [](RopeParams& q) { q.llama3_high_freq_factor = 2.0f; },
      [](RopeParams& q) { q.freq_factors.assign(32, 1.5f); }};
  for (size_t e = 0; e < edits.size(); ++e) {
    SCOPED_TRACE("edit " + std::to_string(e));
    RopeParams fresh = p, edited = stored;
    edits[e](fresh);
    edits[e](edited);
    std::vector<float> s2;
    const std::span<const float> f = rope_frequencies(edited, s2);
    const std::vector<float> w = rope_inv_freq(fresh);
    ASSERT_EQ(f.size(), w.size());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(f[i], w[i]) << i;
    Tensor a = clone(x), b = clone(x);
    ops::rope(a, heads, pos, fresh);
    ops::rope(b, heads, pos, edited);
    expect_bitwise_equal(b, a);
  }
}

TEST_F(RopeTest, RejectsBadArguments) {
  RopeParams p;
  p.head_dim = 64;
  Tensor x = random_f32({2, 128});
  std::vector<int32_t> pos = {0};
  EXPECT_THROW(ops::rope(x, 2, pos, p), Error);  // 2 rows, 1 position
  p.rotary_dim = 7;
  std::vector<int32_t> pos2 = {0, 1};
  EXPECT_THROW(ops::rope(x, 2, pos2, p), Error);
}

}  // namespace
}  // namespace tessera::ops::test
