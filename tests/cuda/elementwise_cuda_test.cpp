// CUDA kernel parity against the CPU reference ops; skipped where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tessera/kernels/elementwise.h"
#include "tessera/ops/ops.h"

namespace tessera {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct DeviceBuffer {
  float* ptr = nullptr;
  explicit DeviceBuffer(size_t n) { EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(float)), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
};

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(CudaKernels, RmsNormMatchesReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int rows = 37, cols = 576;
  auto x = random_vec(rows * cols, std::random_device{}());
  auto w = random_vec(cols, 7);
  Tensor tx = Tensor::from_floats(x, {rows, cols}), tw = Tensor::from_floats(w, {cols});
  Tensor expect = Tensor::empty({rows, cols}, DType::kF32);
  ops::ref::rms_norm(tx, tw, 1e-5f, expect);
  DeviceBuffer dx(x.size()), dw(w.size()), dout(x.size());
  cudaMemcpy(dx.ptr, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dw.ptr, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(kernels::launch_rms_norm(dout.ptr, dx.ptr, dw.ptr, rows, cols, 1e-5f, nullptr),
            cudaSuccess);
  std::vector<float> got(x.size());
  cudaMemcpy(got.data(), dout.ptr, got.size() * 4, cudaMemcpyDeviceToHost);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect.f32()[i], 1e-4f) << i;
}

TEST(CudaKernels, SiluMulMatchesReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const long n = 100003;
  auto g = random_vec(n, std::random_device{}()), u = random_vec(n, 3);
  Tensor tg = Tensor::from_floats(g, {n}), tu = Tensor::from_floats(u, {n});
  Tensor expect = Tensor::empty({n}, DType::kF32);
  ops::ref::silu_mul(tg, tu, expect);
  DeviceBuffer dg(n), du(n), dout(n);
  cudaMemcpy(dg.ptr, g.data(), n * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(du.ptr, u.data(), n * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(kernels::launch_silu_mul(dout.ptr, dg.ptr, du.ptr, n, nullptr), cudaSuccess);
  std::vector<float> got(n);
  cudaMemcpy(got.data(), dout.ptr, n * 4, cudaMemcpyDeviceToHost);
  for (long i = 0; i < n; ++i) EXPECT_NEAR(got[i], expect.f32()[i], 1e-5f + 1e-5f * std::abs(expect.f32()[i]));
}

}  // namespace
}  // namespace tessera
