// Helpers for the CUDA kernel tests: a device probe every test checks first (the tests skip on
// machines without a GPU, e.g. CI), and host <-> device copies of tensors. Core's Storage does
// not allocate CUDA memory yet, so device tensors borrow cudaMalloc'd bytes whose owner frees them.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <memory>

#include "../ops/test_util.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor.h"

namespace tessera::ops::test {

inline bool have_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define TESSERA_REQUIRE_CUDA_DEVICE()                                                        \
  do {                                                                                       \
    if (!::tessera::ops::test::have_cuda_device())                                           \
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): CUDA test skipped"; \
  } while (0)

inline void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(ErrorCode::kInternal, what, ": ", cudaGetErrorString(e));
}

// A contiguous copy of a CPU tensor on CUDA device 0.
inline Tensor to_device(const Tensor& host) {
  void* p = nullptr;
  const size_t bytes = host.nbytes();
  cuda_ok(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
  std::shared_ptr<void> owner(p, [](void* q) { cudaFree(q); });
  if (bytes) cuda_ok(cudaMemcpy(p, host.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  auto storage = Storage::borrow(p, bytes, std::move(owner), Device::cuda(0));
  return Tensor::from_storage(std::move(storage), 0, host.shape(), host.dtype());
}

// A CPU copy of a device tensor; synchronises (and so surfaces any kernel fault).
inline Tensor to_host(const Tensor& dev) {
  Tensor host = Tensor::empty(dev.shape(), dev.dtype());
  cuda_ok(cudaDeviceSynchronize(), "kernel");
  if (dev.nbytes())
    cuda_ok(cudaMemcpy(host.data(), dev.data(), dev.nbytes(), cudaMemcpyDeviceToHost),
            "cudaMemcpy D2H");
  return host;
}

}  // namespace tessera::ops::test
