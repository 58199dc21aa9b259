// Row and element-wise ops: cpu and dispatch against ref on random inputs (odd sizes hit the
// SIMD tails), plus known values (argmax ties, softmax rows sum to one, kv_append placement).
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class ElementwiseTest : public SeededTest {};

// Relative closeness for fp32 ops whose fast version only reorders sums or uses the AVX2 exp
// (about 2 ulp): 1e-5 relative leaves room for a 576..1536-term reordered sum.
void expect_close(const Tensor& a, const Tensor& b, float rel, float abs = 1e-7f) {
  ASSERT_EQ(a.numel(), b.numel());
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float x = a.data_as<float>()[i], y = b.data_as<float>()[i];
    ASSERT_NEAR(x, y, rel * std::fabs(x) + abs) << "element " << i;
  }
}

TEST_F(ElementwiseTest, RmsNorm) {
  for (int64_t d : {1, 7, 64, 576, 1001}) {
    SCOPED_TRACE(d);
    Tensor x = random_f32({5, d}), w = random_f32({d});
    Tensor want = Tensor::empty({5, d}, DType::kF32), got = Tensor::empty({5, d}, DType::kF32);
    ref::rms_norm(x, w, 1e-5f, want);
    cpu::rms_norm(x, w, 1e-5f, got);
    expect_close(want, got, 1e-5f);
    Tensor inplace = clone(x);  // out may alias x
    ops::rms_norm(inplace, w, 1e-5f, inplace);
    expect_close(want, inplace, 1e-5f);
  }
  // Known value: x = [3, 4], w = [1, 2], eps 0 -> rms = sqrt(12.5).
  Tensor x = Tensor::from_floats(std::vector<float>{3, 4}, {1, 2});
  Tensor w = Tensor::from_floats(std::vector<float>{1, 2}, {2});
  Tensor y = Tensor::empty({1, 2}, DType::kF32);
  cpu::rms_norm(x, w, 0.0f, y);
  EXPECT_NEAR(y.data_as<float>()[0], 3 / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y.data_as<float>()[1], 8 / std::sqrt(12.5f), 1e-6f);
}

TEST_F(ElementwiseTest, AddAndSiluMul) {
  for (int64_t n : {1, 9, 1536, 100003}) {
    SCOPED_TRACE(n);
    Tensor x = random_f32({n}), y = random_f32({n});
    Tensor a = clone(x), b = clone(x);
    ref::add(a, y);
    ops::add(b, y);
    expect_close(a, b, 0.0f, 0.0f);  // one rounding either way: bit-identical
    Tensor g = random_f32({n}), u = random_f32({n});
    for (int64_t i = 0; i < std::min<int64_t>(n, 4); ++i)  // large |g| exercises exp's range
      g.data_as<float>()[i] = (i % 2 ? -1.0f : 1.0f) * 60.0f;
    Tensor want = Tensor::empty({n}, DType::kF32), got = Tensor::empty({n}, DType::kF32);
    ref::silu_mul(g, u, want);
    ops::silu_mul(g, u, got);
    expect_close(want, got, 2e-6f, 1e-7f);  // AVX2 exp is ~2 ulp, then one divide and multiply
  }
}

TEST_F(ElementwiseTest, Softmax) {
  for (int64_t d : {1, 5, 17, 49152}) {
    SCOPED_TRACE(d);
    Tensor x = random_f32({3, d});
    for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] *= 10.0f;
    x.data_as<float>()[0] = 1000.0f;  // stability: must not overflow
    Tensor a = clone(x), b = clone(x);
    ref::softmax(a);
    ops::softmax(b);
    expect_close(a, b, 1e-5f, 1e-9f);
    for (int r = 0; r < 3; ++r) {
      double sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += b.data_as<float>()[r * d + i];
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  }
}

TEST_F(ElementwiseTest, ArgmaxFirstMaximumWins) {
  Tensor x = Tensor::from_floats(std::vector<float>{1, 5, 5, 2, -1, -1, -3, -1}, {2, 4});
  EXPECT_EQ(cpu::argmax(x), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(ops::argmax(x), (std::vector<int32_t>{1, 0}));
  Tensor r = random_f32({4, 1001});
  EXPECT_EQ(ref::argmax(r), ops::argmax(r));
  const int pos = randint(0, 1000);
  r.data_as<float>()[pos] = 100.0f;
  EXPECT_EQ(ops::argmax(r)[0], pos);
}

TEST_F(ElementwiseTest, EmbeddingEveryType) {
  for (DType t : kWeightTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    Tensor table = random_weight(t, 50, 96);
    std::vector<int32_t> ids = {0, 49, 7, 7, randint(0, 49)};
    Tensor want = Tensor::empty({5, 96}, DType::kF32), got = Tensor::empty({5, 96}, DType::kF32);
    ref::embedding(table, ids, want);
    ops::embedding(table, ids, got);
    expect_close(want, got, 3e-7f, 3e-7f);  // one FMA rounding at most (Q4_1's q*d+m)
    std::vector<float> row(96);
    ref::dequantize_row(t, table.row_ptr(49), row.data(), 96);
    for (int i = 0; i < 96; ++i) EXPECT_EQ(want.data_as<float>()[96 + i], row[i]);
  }
  Tensor table = random_weight(DType::kF32, 4, 8);
  Tensor out = Tensor::empty({1, 8}, DType::kF32);
  std::vector<int32_t> bad = {4};
  EXPECT_THROW(ops::embedding(table, bad, out), Error);
}

TEST_F(ElementwiseTest, KvAppendPlacesRowsInSlots) {
  const int blocks = 4, bs = 4, kvh = 3, hd = 8;
  Tensor kc = Tensor::zeros({blocks, bs, kvh, hd}, DType::kF32);
  Tensor vc = Tensor::zeros({blocks, bs, kvh, hd}, DType::kF32);
  Tensor kc2 = clone(kc), vc2 = clone(vc);
  Tensor k = random_f32({3, kvh * hd}), v = random_f32({3, kvh * hd});
  std::vector<int32_t> slots = {13, 2, 15};
  ops::kv_append(k, v, slots, kc, vc);
  ref::kv_append(k, v, slots, kc2, vc2);
  expect_close(kc, kc2, 0, 0);
  expect_close(vc, vc2, 0, 0);
  for (int t = 0; t < 3; ++t)
    for (int i = 0; i < kvh * hd; ++i) {
      EXPECT_EQ(kc.data_as<float>()[slots[t] * kvh * hd + i], k.data_as<float>()[t * kvh * hd + i]);
      EXPECT_EQ(vc.data_as<float>()[slots[t] * kvh * hd + i], v.data_as<float>()[t * kvh * hd + i]);
    }
  EXPECT_EQ(kc.data_as<float>()[0], 0.0f);
  std::vector<int32_t> bad = {16, 0, 1};
  EXPECT_THROW(ops::kv_append(k, v, bad, kc, vc), Error);
  std::vector<int32_t> below = {-2, 0, 1};  // -1 is padding, anything lower an error
  EXPECT_THROW(ops::kv_append(k, v, below, kc, vc), Error);
}

// A padding row (slot -1, the rows a bucketed decode graph adds) writes nothing; the real rows
// beside it land as usual.
TEST_F(ElementwiseTest, KvAppendSkipsPaddingRows) {
  const int blocks = 2, bs = 4, kvh = 2, hd = 8;
  for (bool fast : {false, true}) {
    Tensor kc = Tensor::zeros({blocks, bs, kvh, hd}, DType::kF32);
    Tensor vc = Tensor::zeros({blocks, bs, kvh, hd}, DType::kF32);
    Tensor k = random_f32({3, kvh * hd}), v = random_f32({3, kvh * hd});
    std::vector<int32_t> slots = {-1, 5, -1};
    if (fast)
      ops::kv_append(k, v, slots, kc, vc);
    else
      ref::kv_append(k, v, slots, kc, vc);
    for (int64_t s = 0; s < blocks * bs; ++s)
      for (int i = 0; i < kvh * hd; ++i) {
        const float want_k = s == 5 ? k.data_as<float>()[kvh * hd + i] : 0.0f;
        const float want_v = s == 5 ? v.data_as<float>()[kvh * hd + i] : 0.0f;
        ASSERT_EQ(kc.data_as<float>()[s * kvh * hd + i], want_k) << "slot " << s << " fast " << fast;
        ASSERT_EQ(vc.data_as<float>()[s * kvh * hd + i], want_v) << "slot " << s << " fast " << fast;
      }
  }
}

}  // namespace
}  // namespace tessera::ops::test
