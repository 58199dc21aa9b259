// Private to the ops' CUDA files (backend_cuda.cpp, cuda_matmul.cpp, cuda_moe.cpp), built with
// TESSERA_HAVE_CUDA only: launch-error checks that throw naming the op, the device scope of a call
// (its device and its stream), and the mapping of dtypes to the kernels' weight formats. No state
// beyond the current-device switch a DeviceScope undoes.
#pragma once

#if TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"
#include "tessera/kernels/weight_ops.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::cuda {

inline void check(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess)
    fail(ErrorCode::kInternal, op, ": ", what, " failed: ", cudaGetErrorString(e));
}

// Makes the tensors' device current for the call (the dispatcher has checked they share one)
// and names the stream its work goes to: the one of the allocator t came from (the worker's own
// stream, Allocator::stream), so every launch, copy and cuBLAS call of a worker is ordered on one
// stream that a CUDA graph can capture; the legacy default stream for borrowed device memory.
class DeviceScope {
 public:
  DeviceScope(const char* op, const Tensor& t) : stream_(static_cast<cudaStream_t>(stream_of(t))) {
    check(cudaGetDevice(&prev_), op, "cudaGetDevice");
    device_ = t.device().index;
    if (device_ != prev_) check(cudaSetDevice(device_), op, "cudaSetDevice");
  }
  ~DeviceScope() {
    if (device_ != prev_) cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
  int prev_ = 0;
  int device_ = 0;
};

inline int narrow(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT32_MAX) fail(ErrorCode::kOutOfRange, op, ": ", what, " ", v, " too large");
  return static_cast<int>(v);
}

// The weight formats the kernels dequantize in registers (weight_ops.h): every dtype but I32.
inline bool weight_type(DType dtype, kernels::WeightType* out) {
  switch (dtype) {
    case DType::kF32:
      *out = kernels::WeightType::kF32;
      return true;
    case DType::kF16:
      *out = kernels::WeightType::kF16;
      return true;
    case DType::kBF16:
      *out = kernels::WeightType::kBF16;
      return true;
    case DType::kQ8_0:
      *out = kernels::WeightType::kQ8_0;
      return true;
    case DType::kQ4_0:
      *out = kernels::WeightType::kQ4_0;
      return true;
    case DType::kQ4_1:
      *out = kernels::WeightType::kQ4_1;
      return true;
    case DType::kQ5_0:
      *out = kernels::WeightType::kQ5_0;
      return true;
    case DType::kQ5_1:
      *out = kernels::WeightType::kQ5_1;
      return true;
    case DType::kQ2_K:
      *out = kernels::WeightType::kQ2_K;
      return true;
    case DType::kQ3_K:
      *out = kernels::WeightType::kQ3_K;
      return true;
    case DType::kQ4_K:
      *out = kernels::WeightType::kQ4_K;
      return true;
    case DType::kQ5_K:
      *out = kernels::WeightType::kQ5_K;
      return true;
    case DType::kQ6_K:
      *out = kernels::WeightType::kQ6_K;
      return true;
    case DType::kI32:
    case DType::kQ4_0x8:  // the CPU's packed layouts never reach a GPU
    case DType::kQ4_1x8:
    case DType::kQ8_0x8:
    case DType::kQ5_0x8:
    case DType::kQ5_1x8:
    case DType::kQ4_Kx8:
    case DType::kQ5_Kx8:
    case DType::kQ6_Kx8:
      return false;
  }
  return false;
}

inline kernels::WeightType weight_type_of(const Tensor& w) {
  kernels::WeightType t{};
  if (!weight_type(w.dtype(), &t))
    fail(ErrorCode::kUnsupported, "no CUDA weight format for ", w.str());
  return t;
}

// Device scratch for one call, allocated and freed in the order of the call's stream (the
// runtime's memory pool caches it, so this costs no device synchronisation; under CUDA graph
// capture the pair becomes the graph's own allocation and free nodes).
class Scratch {
 public:
  Scratch(size_t bytes, const char* op, cudaStream_t stream) : stream_(stream) {
    if (bytes) check(cudaMallocAsync(&ptr_, bytes, stream_), op, "cudaMallocAsync");
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  uint8_t* get() const { return static_cast<uint8_t*>(ptr_); }

 private:
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

// The CUDA table's matmul (cuda_matmul.cpp): decode GEMV or cuBLAS GEMM by rows of x.
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets);
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y);
// The fused entries (ops::rms_norm_matmul_many, ops::silu_mul_matmul): false when the step is not
// one the int8 GEMV takes.
bool rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps,
                          std::span<const MatmulTarget> targets);
bool silu_mul_matmul(const Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& scratch, Tensor& y, bool accumulate);
// y = x w^T on `stream`, for tensors over borrowed scratch (no allocator, so no stream of their
// own: the MoE experts' gathered rows).
void matmul_on(cudaStream_t stream, const Tensor& x, const Tensor& w, Tensor& y);
// The CUDA table's Mixture-of-Experts ops (cuda_moe.cpp).
void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights);
void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& idx, const Tensor& weights, int first_expert, Tensor& out);

}  // namespace tessera::ops::cuda

#endif
