// ops::exact_row_split: cutting a step's rows where it says gives bitwise the same matmul rows on
// the two parts as on the whole (the model's overlapped TP path relies on it for tokens and
// logprobs equal with overlap on and off), for weight types of every CPU path (F32/F16 through
// the fused kernels, Q8_0/Q4_1 through the int8 path and the fp32-activation path, Q5_0),
// every row count it cuts, fresh random inputs. (sgemm's rows are not M-independent: cutting
// 18..64 rows in halves moved some outputs by an ulp, so it does not cut there.)
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class RowSplitTest : public SeededTest {
 protected:
  void check(DType t, int64_t m, int64_t n, int64_t k) {
    SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(m));
    const int64_t cut = exact_row_split(Device::cpu(), m);
    if (cut == 0) return;
    ASSERT_GT(cut, 0);
    ASSERT_LT(cut, m);
    Tensor w = random_weight(t, n, k);
    Tensor x = random_f32({m, k});
    Tensor bias = random_f32({n});
    Tensor whole = Tensor::empty({m, n}, DType::kF32);
    matmul(x, w, bias, whole);
    Tensor a = Tensor::empty({cut, n}, DType::kF32), b = Tensor::empty({m - cut, n}, DType::kF32);
    matmul(x.slice(0, cut), w, bias, a);
    matmul(x.slice(cut, m), w, bias, b);
    EXPECT_EQ(std::memcmp(whole.data(), a.data(), a.nbytes()), 0);
    EXPECT_EQ(std::memcmp(whole.slice(cut, m).data(), b.data(), b.nbytes()), 0);
  }
};

TEST_F(RowSplitTest, CutsOnlyTheFusedKernelsRows) {
  EXPECT_EQ(exact_row_split(Device::cpu(), 0), 0);
  EXPECT_EQ(exact_row_split(Device::cpu(), 1), 0);
  EXPECT_EQ(exact_row_split(Device::cpu(), 2), 1);
  EXPECT_EQ(exact_row_split(Device::cpu(), 8), 4);
  // sgemm's rows (M > 8) depend on M: no cut there.
  for (int64_t m = 9; m < 200; ++m) EXPECT_EQ(exact_row_split(Device::cpu(), m), 0) << m;
}

TEST_F(RowSplitTest, PartsAreBitwiseTheWholesRows) {
  for (auto mode : {cpu::Activations::kF32, cpu::Activations::kInt8}) {
    ActivationsScope scope(mode);
    for (DType t : {DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ4_1, DType::kQ5_0})
      for (int64_t m : {2, 3, 4, 5, 6, 7, 8})
        check(t, m, 72 + randint(0, 40), 96 + 32 * randint(0, 4));
  }
}

}  // namespace
}  // namespace tessera::ops::test
