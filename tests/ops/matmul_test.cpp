// Matmul parity: ops::cpu::matmul and the ops::matmul dispatcher against ops::ref::matmul on the
// SAME (already quantized) weights, every weight type, decode (fused kernels) and prefill (BLAS
// tiles) sizes, odd shapes, with and without bias. These are the exact (fp32-activation) paths, so
// the fixture runs under cpu::Activations::kF32; int8_matmul_test covers the integer path.
#include <omp.h>

#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class MatmulTest : public SeededTest {
 protected:
  ActivationsScope exact_{cpu::Activations::kF32};
  // Checks y against ref for x[M,K] . w^T. Tolerance: the fast paths reorder the fp32 sums (SIMD
  // lanes, d * (q.x) per block, sgemm blocking) and fuse multiply-adds, so each output may move
  // by a few ulps of the sum of |terms|; for K <= 1536 the observed error is ~1e-6 of
  // sum|x_k w_k|, and 3e-5 of it still flags any single wrong weight (an element's term is
  // ~sum/K >= 6.5e-4 of the sum).
  void check(DType t, int64_t m, int64_t n, int64_t k, bool with_bias) {
    SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(m) + " N=" +
                 std::to_string(n) + " K=" + std::to_string(k) + (with_bias ? " bias" : ""));
    Tensor w = random_weight(t, n, k);
    Tensor x = random_f32({m, k});
    Tensor bias = with_bias ? random_f32({n}) : Tensor();
    Tensor want = Tensor::empty({m, n}, DType::kF32);
    Tensor got = Tensor::empty({m, n}, DType::kF32);
    Tensor got_dispatch = Tensor::empty({m, n}, DType::kF32);
    ref::matmul(x, w, bias, want);
    cpu::matmul(x, w, bias, got);
    ops::matmul(x, w, bias, got_dispatch);

    std::vector<float> wrow(static_cast<size_t>(k));
    const float* xp = x.data_as<float>();
    for (int64_t j = 0; j < n; ++j) {
      ref::dequantize_row(t, w.row_ptr(j), wrow.data(), k);
      for (int64_t i = 0; i < m; ++i) {
        float sum_abs = 0;
        for (int64_t c = 0; c < k; ++c) sum_abs += std::fabs(xp[i * k + c] * wrow[c]);
        const float tol = 3e-5f * sum_abs + 1e-6f;
        const float r = want.data_as<float>()[i * n + j];
        ASSERT_NEAR(got.data_as<float>()[i * n + j], r, tol) << "cpu y[" << i << "," << j << "]";
        ASSERT_NEAR(got_dispatch.data_as<float>()[i * n + j], r, tol)
            << "dispatch y[" << i << "," << j << "]";
      }
    }
  }
};

TEST_F(MatmulTest, EveryWeightTypeAndRowCount) {
  for (DType t : kWeightTypes)
    for (int64_t m : {1, 2, 3, 7, 9, 16, 17, 64}) check(t, m, 37, 96, m % 2 == 1);
}

TEST_F(MatmulTest, ModelShapesDecode) {
  for (DType t : {DType::kQ4_1, DType::kQ8_0, DType::kF32}) {
    check(t, 1, 576, 576, false);
    check(t, 4, 192, 1536, false);
  }
}

TEST_F(MatmulTest, OddShapes) {
  // Plain types allow any K: tails of the 16- and 8-wide loops.
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16})
    for (int64_t k : {1, 7, 13, 37, 100}) check(t, 3, 5, k, true);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    check(t, 5, 1, 32, true);
    check(t, 2, 129, 160, false);
  }
}

TEST_F(MatmulTest, SameResultWithOneThread) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  check(DType::kQ4_1, 1, 300, 576, true);
  check(DType::kQ8_0, 64, 100, 576, false);
  omp_set_num_threads(saved);
}

TEST_F(MatmulTest, KnownValues) {
  // y = x . w^T + b with w = [[1,2],[3,4],[5,6]], x = [[1,1],[0,2]], b = [1,0,-1].
  Tensor w = Tensor::from_floats(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor x = Tensor::from_floats(std::vector<float>{1, 1, 0, 2}, {2, 2});
  Tensor b = Tensor::from_floats(std::vector<float>{1, 0, -1}, {3});
  Tensor y = Tensor::empty({2, 3}, DType::kF32);
  const std::vector<float> want = {4, 7, 10, 5, 8, 11};
  for (auto fn : {&ref::matmul, &cpu::matmul, &ops::matmul}) {
    fn(x, w, b, y);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(y.data_as<float>()[i], want[static_cast<size_t>(i)]);
  }
}

TEST_F(MatmulTest, RejectsBadShapes) {
  Tensor w = random_weight(DType::kQ4_1, 8, 64);
  Tensor x = random_f32({2, 32});
  Tensor y = Tensor::empty({2, 8}, DType::kF32);
  EXPECT_THROW(cpu::matmul(x, w, Tensor(), y), Error);
  EXPECT_THROW(ref::matmul(x, w, Tensor(), y), Error);
  Tensor x2 = random_f32({2, 64});
  Tensor y_bad = Tensor::empty({2, 7}, DType::kF32);
  EXPECT_THROW(ops::matmul(x2, w, Tensor(), y_bad), Error);
}

// Tensors labelled CUDA on a machine without a GPU: the call fails with an error, never a crash
// (the bytes, borrowed host memory, are never read). Where a GPU is present the cuda instances of
// BackendOps cover the real thing.
TEST_F(MatmulTest, CudaTensorsWithoutAGpuFailCleanly) {
  int devices = 0;
  try {
    make_allocator(Device::cuda(0));
    devices = 1;
  } catch (const Error&) {
  }
  if (devices) GTEST_SKIP() << "a GPU is present";
  std::vector<float> host(64 + 128 + 8);
  auto st = Storage::borrow(host.data(), host.size() * 4, nullptr, Device::cuda(0));
  Tensor x = Tensor::from_storage(st, 0, {2, 32}, DType::kF32);
  Tensor w = Tensor::from_storage(st, 64 * 4, {4, 32}, DType::kF32);
  Tensor y = Tensor::from_storage(st, 192 * 4, {2, 4}, DType::kF32);
  EXPECT_THROW(ops::matmul(x, w, Tensor(), y), Error);
}

}  // namespace
}  // namespace tessera::ops::test
