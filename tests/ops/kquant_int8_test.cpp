// The integer path for K-quant weights (Q2_K..Q6_K, src/ops/cpu/kquant_avx2.cpp int8_row_dot):
// ops::matmul under int8 activations against a float64 dot of the dequantized weights with the
// original activations, within the int8 rounding bound; rows independent of how many are
// multiplied together; the activation mode picks the path for every K-quant, Q2_K (a minimum per
// 16 elements) included.
#include <vector>

#include "../../src/ops/cpu/int8_dot.h"
#include "../../src/ops/cpu/simd.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class KquantInt8Test : public SeededTest {};

// Each x_i is rounded by at most its 32-block's d / 2 (int8_rounding_bound); 1e-5 of
// sum |w_i x_i| covers the fp32 scaling and summing. A wrong scale, half or minimum moves a
// result by about |w . x| over a chunk, far beyond.
TEST_F(KquantInt8Test, MatchesTheFloat64DotWithinTheRoundingBound) {
  if (!cpu::detail::have_avx2()) GTEST_SKIP() << "no AVX2: K-quants keep the fp32 path";
  ActivationsScope int8(cpu::Activations::kInt8);
  for (DType t : kKquantTypes) {
    ASSERT_TRUE(cpu::detail::use_int8(t)) << dtype_name(t);
    for (auto [m, n, k] :
         {std::tuple<int64_t, int64_t, int64_t>{1, 13, 512}, {3, 7, 256}, {9, 20, 768}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(m) +
                   " N=" + std::to_string(n) + " K=" + std::to_string(k));
      const Tensor w = random_kquant(t, n, k);
      const Tensor x = random_f32({m, k});
      const Tensor bias = random_f32({n});
      Tensor y = Tensor::empty({m, n}, DType::kF32);
      ops::matmul(x, w, bias, y);
      EXPECT_EQ(int8_result_error(w, x, bias, y.data_as<float>()), "");
      // One row at a time gives the same values (a step may be cut anywhere).
      for (int64_t i = 0; i < m; ++i) {
        Tensor yi = Tensor::empty({1, n}, DType::kF32);
        ops::matmul(x.slice(i, i + 1), w, bias, yi);
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(yi.data_as<float>()[j], y.data_as<float>()[i * n + j]) << i << "," << j;
      }
    }
  }
}

// The integer path differs from the fp32 one (it really ran) for every K-quant.
TEST_F(KquantInt8Test, TheActivationModeSelectsThePath) {
  if (!cpu::detail::have_avx2()) GTEST_SKIP() << "no AVX2: K-quants keep the fp32 path";
  for (DType t : kKquantTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Tensor w = random_kquant(t, 16, 512);
    const Tensor x = random_f32({2, 512});
    Tensor a = Tensor::empty({2, 16}, DType::kF32), b = Tensor::empty({2, 16}, DType::kF32);
    {
      ActivationsScope f32(cpu::Activations::kF32);
      cpu::matmul(x, w, Tensor(), a);
    }
    {
      ActivationsScope int8(cpu::Activations::kInt8);
      cpu::matmul(x, w, Tensor(), b);
    }
    int differs = 0;
    for (int i = 0; i < 32; ++i) differs += a.data_as<float>()[i] != b.data_as<float>()[i];
    EXPECT_GT(differs, 0);
  }
}

}  // namespace
}  // namespace tessera::ops::test
