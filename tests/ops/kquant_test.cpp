// K-quants (Q2_K..Q6_K): hand-built blocks with known values for the bit fields most easily got
// wrong, the AVX2 dequantizer and the fast matmul paths (fused decode kernels, dequantized sgemm
// panels) against the reference on fresh random super-blocks, and that the CUDA table takes them
// (its parity cases are in cuda_matmul_test.cpp).
// (tests/python/test_kquant.py checks the reference against the gguf package bit for bit.)
#include <cmath>
#include <cstring>

#include "tessera/core/half.h"
#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

constexpr DType kKquants[] = {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

std::vector<size_t> half_fields(DType t) {
  const KquantHalfFields f = kquant_half_fields(t);
  return {f.begin(), f.end()};
}

class KquantTest : public SeededTest {
 protected:
  // |q * d * sc| per element: the same blocks dequantized with dmin = 0.
  std::vector<float> products(const Tensor& w) {
    Tensor c = clone(w);
    const auto fields = half_fields(w.dtype());
    const auto bytes = static_cast<size_t>(dtype_info(w.dtype()).block_bytes);
    if (fields.size() == 2)
      for (size_t b = 0; b < c.nbytes() / bytes; ++b)
        std::memset(static_cast<uint8_t*>(c.data()) + b * bytes + fields[1], 0, 2);
    std::vector<float> out(static_cast<size_t>(c.numel()));
    ref::dequantize_row(c.dtype(), c.data(), out.data(), c.numel());
    for (float& v : out) v = std::fabs(v);
    return out;
  }
};

TEST_F(KquantTest, Q4_KHighSubBlockScaleAndMin) {
  BlockQ4_K b{};
  b.d = 0x3c00;        // 1.0
  b.dmin = 0x3800;     // 0.5
  b.scales[9] = 0x23;  // sub-block 5: scale low bits 3, min low bits 2
  b.scales[1] = 0x40;  // ... scale bits 4-5 = 1 (scale 19); sub-block 1's own scale 0
  b.scales[5] = 0x80;  // ... min bits 4-5 = 2 (min 34); sub-block 1's own min 0
  for (int l = 0; l < 32; ++l) b.qs[64 + l] = static_cast<uint8_t>((l % 16) << 4);
  std::vector<float> y(256);
  ref::dequantize_row(DType::kQ4_K, &b, y.data(), 256);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(y[160 + l], 19.0f * static_cast<float>(l % 16) - 17.0f);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(y[32 + l], 0.0f);
}

TEST_F(KquantTest, Q6_KLastChunkTakesHighNibbleAndTopBits) {
  BlockQ6_K b{};
  b.d = 0x3800;  // 0.5
  for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i - 8);
  for (int l = 0; l < 32; ++l) {
    b.ql[96 + l] = 0xa0;  // high nibble 10: elements 224 + l
    b.qh[32 + l] = 0xc0;  // bits 6-7 = 3
  }
  std::vector<float> y(256);
  ref::dequantize_row(DType::kQ6_K, &b, y.data(), 256);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(y[224 + l], 0.5f * static_cast<float>(6 + l / 16) * 26.0f);
  EXPECT_EQ(y[0], 0.5f * -8.0f * -32.0f);  // zero bits: q = -32
}

// The AVX2 dequantizer forms q*(d*sc) - dmin*m with one FMA where the reference rounds the
// product and the difference apart: |fast - ref| <= 2^-24 (|q d sc| + |ref|). Types without mins
// round once on both sides and must agree exactly.
TEST_F(KquantTest, FastDequantizeMatchesReference) {
  for (DType t : kKquants) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = random_kquant(t, 3, 1024);
    std::vector<float> want(static_cast<size_t>(w.numel())), got(want.size());
    ref::dequantize_row(t, w.data(), want.data(), w.numel());
    cpu::dequantize_row(t, w.data(), got.data(), w.numel());
    const auto prod = products(w);
    const bool one_rounding = half_fields(t).size() == 1;
    for (size_t i = 0; i < want.size(); ++i) {
      const double bound = one_rounding ? 0.0 : std::ldexp(prod[i] + std::fabs(want[i]), -24);
      ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), bound) << "element " << i;
    }
  }
}

// Tolerance of an output y = sum_k w_k x_k (+ b), w_k = p_k - m_k (p = q d sc, m = dmin m): the
// reference sums K rounded products in order (error <= K u S, u = 2^-24, S = sum |w_k x_k|);
// the fused kernels sum p_k x_k and m_k x_k apart, in 8 lanes of K/8 then 3 pairwise adds, and
// scale per sub-block ((K/8 + 8) u (P + Mn), P = sum |p_k x_k| and Mn = sum |m_k x_k| <= P + S);
// sgemm sums the dequantized weights (each within u (|p_k| + |w_k|)) its own way (<= K u S).
// So |fast - ref| <= u ((2K + 16) (2 S + 2 P) + |y|): ~2e-4 (S + P) for K = 1536, still far below
// one wrong element's term (~S / K).
// The fp32-activation kernels (kquant_avx2.cpp row_dot); the int8 path of Q2_K..Q6_K is tested in
// kquant_int8_test.cpp.
class KquantMatmulTest : public KquantTest {
 protected:
  ActivationsScope f32_{cpu::Activations::kF32};
  void check(DType t, int64_t m, int64_t n, int64_t k, bool with_bias) {
    SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(m) +
                 " N=" + std::to_string(n) + " K=" + std::to_string(k));
    const Tensor w = random_kquant(t, n, k);
    const Tensor x = random_f32({m, k});
    const Tensor bias = with_bias ? random_f32({n}) : Tensor();
    Tensor want = Tensor::empty({m, n}, DType::kF32), got = Tensor::empty({m, n}, DType::kF32);
    Tensor got_dispatch = Tensor::empty({m, n}, DType::kF32);
    ref::matmul(x, w, bias, want);
    cpu::matmul(x, w, bias, got);
    ops::matmul(x, w, bias, got_dispatch);
    std::vector<float> wrow(static_cast<size_t>(n * k));
    ref::dequantize_row(t, w.data(), wrow.data(), n * k);
    const auto prod = products(w);
    const float* xp = x.data_as<float>();
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        double s = 0, s_prod = 0;
        for (int64_t c = 0; c < k; ++c) {
          s += std::fabs(static_cast<double>(xp[i * k + c]) * wrow[static_cast<size_t>(j * k + c)]);
          s_prod +=
              std::fabs(static_cast<double>(xp[i * k + c]) * prod[static_cast<size_t>(j * k + c)]);
        }
        const float r = want.data_as<float>()[i * n + j];
        const double tol =
            std::ldexp((2.0 * static_cast<double>(k) + 8) * s + s_prod + std::fabs(r), -24);
        ASSERT_NEAR(got.data_as<float>()[i * n + j], r, tol) << "cpu y[" << i << "," << j << "]";
        ASSERT_NEAR(got_dispatch.data_as<float>()[i * n + j], r, tol)
            << "dispatch y[" << i << "," << j << "]";
      }
  }
};

TEST_F(KquantMatmulTest, EveryTypeAndRowCount) {
  for (DType t : kKquants)
    for (int64_t m : {1, 2, 3, 5, 8, 9, 17}) check(t, m, 37, 512, m % 2 == 1);
}

TEST_F(KquantMatmulTest, ModelShapes) {
  for (DType t : {DType::kQ4_K, DType::kQ6_K}) {
    check(t, 1, 96, 1536, false);
    check(t, 4, 64, 768, true);
  }
}

// The CUDA table implements matmul and embedding rows for every K-quant (dequantized in registers,
// kernels/decode.cuh), so a K-quant model passes the CUDA start check.
TEST_F(KquantTest, CudaTableTakesKquantWeights) {
  if (!cuda_backend()) GTEST_SKIP() << "built without CUDA";
  for (DType t : kKquants)
    for (Op op : {Op::kMatmul, Op::kEmbedding, Op::kEmbeddingShard})
      EXPECT_TRUE(cuda_backend()->supports(op, t)) << dtype_name(t) << " " << op_name(op);
}

}  // namespace
}  // namespace tessera::ops::test
