// Device-parametrised parity of the matmul paths and of K-quant embedding rows (cpu, guarded, and
// cuda where a GPU is present; the cuda instances skip elsewhere): every weight type including
// the K-quants, rows M in {1, 3, 8, 9, 64} so both the decode GEMV (M <= 8) and the GEMM path
// (M > 8) run, K values that leave a partial staging chunk and K not a multiple of 256 where the
// type allows, rows whose bytes are (and are not) 16-byte aligned (128-bit loads or the byte
// fallback), N not a multiple of the GEMV's 4 columns per CTA, bias on and off. Tolerances per
// path: matmul_bounds.h. The CPU instances (exact fp32 activations, matmul_test's bound; K-quants
// are kquant_test's) check the cases and the bounds' plumbing here, where no GPU is.
#include <iterator>
#include <string>
#include <vector>

#include "matmul_bounds.h"
#include "tessera/ops/backend.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class DeviceMatmul : public SeededTest, public ::testing::WithParamInterface<DeviceType> {
 protected:
  void SetUp() override {
    device_ = Device{GetParam(), 0};
    try {
      alloc_ = make_allocator(device_);
    } catch (const Error& e) {
      GTEST_SKIP() << device_.str() << " is not available here: " << e.what();
    }
  }
  bool cuda() const { return device_.type == DeviceType::kCUDA; }
  Tensor dev(const Tensor& host) { return to_device(host, alloc_); }

  void check(DType t, int64_t m, int64_t n, int64_t k, bool with_bias) {
    const std::string what = std::string(dtype_name(t)) + " M=" + std::to_string(m) +
                             " N=" + std::to_string(n) + " K=" + std::to_string(k) +
                             (with_bias ? " bias" : "");
    SCOPED_TRACE(what);
    const Tensor w = random_any_weight(t, n, k), x = random_f32({m, k});
    const Tensor bias = with_bias ? random_f32({n}) : Tensor();
    Tensor want = Tensor::empty({m, n}, DType::kF32);
    ref::matmul(x, w, bias, want);
    Tensor got_dev = Tensor::empty({m, n}, DType::kF32, alloc_);
    ops::matmul(dev(x), dev(w), with_bias ? dev(bias) : Tensor(), got_dev);
    const Tensor got = to_host(got_dev);
    const MatmulBound bound = cuda() ? cuda_bound(t, m) : MatmulBound::kCpuExact;
    std::vector<float> wrow(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
      ref::dequantize_row(t, w.row_ptr(j), wrow.data(), k);
      for (int64_t i = 0; i < m; ++i) {
        const float r = want.data_as<float>()[i * n + j];
        const double tol =
            matmul_bound(bound, t, x.data_as<float>() + i * k, wrow.data(), w.row_ptr(j), k, r);
        ASSERT_NEAR(got.data_as<float>()[i * n + j], r, tol) << "y[" << i << "," << j << "]";
      }
    }
  }

  ActivationsScope exact_{cpu::Activations::kF32};
  Device device_;
  std::shared_ptr<Allocator> alloc_;
};

// K per type: a small K whose rows are not 16-byte multiples where the format allows it (byte
// loads), and a K past one staging chunk (1 KiB plain, 32 blocks, 8 super-blocks) whose rows are.
std::vector<int64_t> ks_for(DType t) {
  switch (t) {
    case DType::kF32:
      return {37, 300};  // 148 B rows (byte loads), 1200 B: one chunk of 256 and a partial one
    case DType::kF16:
    case DType::kBF16:
      return {100, 576};  // 200 B rows; 1152 B: a chunk of 512 and a partial one
    default:
      break;
  }
  if (is_kquant(t)) return {768, 2304};  // 3 super-blocks; 9 (a chunk of 8 and a partial one)
  return {96, 1536};  // 3 blocks (K % 256 != 0); 48 blocks, a chunk of 32 and a partial one
}

TEST_P(DeviceMatmul, EveryTypeBothPathsOddShapes) {
  std::vector<DType> types(std::begin(kWeightTypes), std::end(kWeightTypes));
  types.insert(types.end(), std::begin(kKquantTypes), std::end(kKquantTypes));
  for (DType t : types) {
    // The CPU's K-quant kernels split scales and mins (kquant_test.cpp bounds them that way).
    if (!cuda() && is_kquant(t)) continue;
    if (!backend_for(device_).supports(Op::kMatmul, t)) {
      ADD_FAILURE() << device_.str() << " does not implement matmul for " << dtype_name(t);
      continue;
    }
    for (int64_t k : ks_for(t))
      for (int64_t m : {1, 3, 8, 9, 64}) check(t, m, 37, k, (m + k) % 2 == 1);
  }
}

// Every dtype with and without bias at the decode size a model uses most (M = 1).
TEST_P(DeviceMatmul, DecodeWithAndWithoutBias) {
  for (DType t : {DType::kQ4_0, DType::kQ8_0, DType::kF16, DType::kQ4_K, DType::kQ6_K}) {
    if (!cuda() && is_kquant(t)) continue;
    for (bool b : {false, true}) check(t, 1, 70, is_kquant(t) ? 512 : 256, b);
  }
}

// The GEMM dequantizes weight rows in tiles bounded by kDequantTileBytes: with K = 4096 a tile
// holds 8192 rows, so N = 8192 + 37 takes two tiles, the second partial. GPU only (it is slow
// on the CPU instances and exercises no CPU code).
TEST_P(DeviceMatmul, GemmTilesCoverEveryColumn) {
  if (!cuda()) GTEST_SKIP() << "exercises the CUDA GEMM's tiling only";
  if (!cuda_plan::build_has_gemm()) GTEST_SKIP() << "built without cuBLAS";
  const auto plan = cuda_plan::gemm_scratch(cuda_plan::MatmulPath::kGemmDequant, 9, 8229, 4096);
  ASSERT_EQ(plan.tile_columns, 8192);
  check(DType::kQ4_0, 9, 8229, 4096, true);
}

// Embedding rows of the K-quants: the same per-element formula as the reference, so exact. (The
// CPU's AVX2 dequantizer rounds differently, within kquant_test.cpp's bound.)
TEST_P(DeviceMatmul, KquantEmbeddingRowsAreExact) {
  if (!cuda()) GTEST_SKIP() << "the CUDA decode only";
  for (DType t : kKquantTypes) {
    const int64_t vocab = 40, dim = 512;
    const Tensor table = random_kquant(t, vocab, dim);
    std::vector<int32_t> ids{39, 0, 7, 7, 21};
    Tensor want = Tensor::empty({5, dim}, DType::kF32);
    ref::embedding(table, ids, want);
    Tensor idx = Tensor::empty({5}, DType::kI32);
    std::copy(ids.begin(), ids.end(), idx.data_as<int32_t>());
    Tensor got_dev = Tensor::empty({5, dim}, DType::kF32, alloc_);
    ops::embedding(dev(table), dev(idx), got_dev);
    const Tensor got = to_host(got_dev);
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_EQ(got.data_as<float>()[i], want.data_as<float>()[i])
          << dtype_name(t) << " [" << i << "]";
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, DeviceMatmul,
                         ::testing::Values(DeviceType::kCPU, DeviceType::kGuarded,
                                           DeviceType::kCUDA),
                         [](const auto& info) {
                           return std::string(info.param == DeviceType::kCPU       ? "cpu"
                                              : info.param == DeviceType::kGuarded ? "guarded"
                                                                                   : "cuda");
                         });

}  // namespace
}  // namespace tessera::ops::test
