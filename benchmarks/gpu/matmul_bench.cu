// The matmul cases of kernels_bench (see its header for the nvcc line): Llama-3 1B and 8B
// projection shapes in Q4_0, Q8_0 and F16.
//  - decode GEMV at M = 1 (launch_quantize_q8 + launch_gemv, as the CUDA table runs them): weight
//    bytes read / time, beside a device-to-device cudaMemcpy's bandwidth (bytes read + written /
//    time) measured in the same run. The weights rotate over copies spanning >= 512 MiB so that
//    no launch finds its weights in L2 (50 MiB on an H100).
//  - prefill GEMM at M = 512 (the cuBLAS path of src/ops/cuda_matmul.cpp, its tiles planned by the
//    same cuda_matmul_plan.cpp): TFLOP/s beside cublasGemmEx's own fp16 rate on an 8192^3
//    product in the same run.
// Nothing here has run on a GPU yet; benchmarks/gpu/run.sh runs it.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "cuda_matmul_plan.h"
#include "tessera/kernels/matmul.h"

namespace k = tessera::kernels;
namespace plan = tessera::ops::cuda_plan;
using tessera::DType;

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void ok_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", what, cublasGetStatusString(s));
    std::exit(1);
  }
}

// Median microseconds of launch(i) over 20 runs after 3 warm-ups (i: the run's index).
double median_us(const std::function<void(int)>& launch) {
  cudaEvent_t a, b;
  ok(cudaEventCreate(&a), "event");
  ok(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) launch(i);
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    ok(cudaEventRecord(a), "record");
    launch(3 + i);
    ok(cudaEventRecord(b), "record");
    ok(cudaEventSynchronize(b), "sync");
    float t = 0;
    ok(cudaEventElapsedTime(&t, a, b), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1e3;
}

struct Type {
  const char* name;
  k::WeightType wt;
  DType dt;
  int block_elems, block_bytes;
};
constexpr Type kTypes[] = {{"q4_0", k::WeightType::kQ4_0, DType::kQ4_0, 32, 18},
                           {"q8_0", k::WeightType::kQ8_0, DType::kQ8_0, 32, 34},
                           {"f16", k::WeightType::kF16, DType::kF16, 1, 2}};

struct Shape {
  const char* what;
  int n, k;
};
constexpr Shape kShapes[] = {{"1B q/o", 2048, 2048},      {"1B k/v", 512, 2048},
                             {"1B gate/up", 8192, 2048},  {"1B down", 2048, 8192},
                             {"8B q/o", 4096, 4096},      {"8B k/v", 1024, 4096},
                             {"8B gate/up", 14336, 4096}, {"8B down", 4096, 14336}};

size_t row_bytes(const Type& t, int k) {
  return static_cast<size_t>(k / t.block_elems) * static_cast<size_t>(t.block_bytes);
}

// Random quants with every block's fp16 scale a small finite value (random bits could be NaN,
// which times the same but reads oddly in a profile); F16 weights uniform in (-1, 1).
std::vector<uint8_t> random_weight(const Type& t, int n, int k, std::mt19937& rng) {
  std::vector<uint8_t> w(static_cast<size_t>(n) * row_bytes(t, k));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> val(-1.f, 1.f);
  if (t.dt == DType::kF16) {
    for (size_t i = 0; i + 1 < w.size(); i += 2) {
      const __half h = __float2half(val(rng));
      std::memcpy(&w[i], &h, 2);
    }
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  for (size_t i = 0; i < w.size(); i += static_cast<size_t>(t.block_bytes)) {
    const __half d = __float2half(0.01f * val(rng));
    std::memcpy(&w[i], &d, 2);
  }
  return w;
}

template <typename T>
T* device_alloc(size_t count) {
  T* p = nullptr;
  ok(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc");
  return p;
}

// Device-to-device copy of 1 GiB: (read + written) bytes / time, in GB/s.
double copy_bandwidth() {
  const size_t bytes = size_t{1} << 30;
  auto* a = device_alloc<uint8_t>(bytes);
  auto* b = device_alloc<uint8_t>(bytes);
  ok(cudaMemset(a, 1, bytes), "memset");
  const double us =
      median_us([&](int) { ok(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy"); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / (us * 1e-6) / 1e9;
}

// cublasGemmEx on fp16 A, B, C with fp32 compute, 8192^3: TFLOP/s.
double gemm_peak(cublasHandle_t h) {
  const int n = 8192;
  const size_t elems = static_cast<size_t>(n) * n;
  auto* a = device_alloc<__half>(elems);
  auto* b = device_alloc<__half>(elems);
  auto* c = device_alloc<__half>(elems);
  ok(cudaMemset(a, 0, elems * 2), "memset");
  ok(cudaMemset(b, 0, elems * 2), "memset");
  const float one = 1.f, zero = 0.f;
  const double us = median_us([&](int) {
    ok_blas(
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16F, n, b, CUDA_R_16F, n,
                     &zero, c, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "peak gemm");
  });
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * static_cast<double>(n) * n / (us * 1e-6) / 1e12;
}

void gemv_case(const Type& t, const Shape& s, double copy_gbs, std::mt19937& rng) {
  const size_t bytes = static_cast<size_t>(s.n) * row_bytes(t, s.k);
  const int copies =
      static_cast<int>(std::max<size_t>(1, ((size_t{512} << 20) + bytes - 1) / bytes));
  const std::vector<uint8_t> host = random_weight(t, s.n, s.k, rng);
  auto* w = device_alloc<uint8_t>(bytes * copies);
  for (int c = 0; c < copies; ++c)
    ok(cudaMemcpy(w + c * bytes, host.data(), bytes, cudaMemcpyHostToDevice), "H2D");
  std::vector<float> xh(static_cast<size_t>(s.k));
  std::normal_distribution<float> nd;
  for (auto& v : xh) v = nd(rng);
  auto* x = device_alloc<float>(xh.size());
  ok(cudaMemcpy(x, xh.data(), xh.size() * 4, cudaMemcpyHostToDevice), "H2D");
  auto* y = device_alloc<float>(static_cast<size_t>(s.n));
  const auto q8 = plan::q8_scratch(1, s.k);
  auto* scratch = device_alloc<uint8_t>(q8.bytes);
  auto* qs = reinterpret_cast<int8_t*>(scratch);
  auto* ds = reinterpret_cast<float2*>(scratch + q8.ds_offset);
  const bool int8 = k::gemv_uses_int8(t.wt);
  k::GemvArgs a{
      .y = y,
      .x = x,
      .w = w,
      .type = t.wt,
      .row_bytes = row_bytes(t, s.k),
      .M = 1,
      .N = s.n,
      .K = s.k,
      .vector_loads = plan::vector_loads(reinterpret_cast<uintptr_t>(w), row_bytes(t, s.k)),
      .xq = int8 ? qs : nullptr,
      .xds = int8 ? ds : nullptr};
  const double us = median_us([&](int i) {
    a.w = w + static_cast<size_t>(i % copies) * bytes;
    if (int8) ok(k::launch_quantize_q8(qs, ds, x, 1, s.k, nullptr), "quantize");
    ok(k::launch_gemv(a, nullptr), "gemv");
  });
  const double gbs = static_cast<double>(bytes) / (us * 1e-6) / 1e9;
  std::printf("gemv M=1 %-11s %5dx%-5d %-5s %9.1f us %8.1f GB/s weights %5.1f%% of copy\n", s.what,
              s.n, s.k, t.name, us, gbs, 100.0 * gbs / copy_gbs);
  for (void* p : {static_cast<void*>(w), static_cast<void*>(x), static_cast<void*>(y),
                  static_cast<void*>(scratch)})
    cudaFree(p);
}

void gemm_case(cublasHandle_t h, const Type& t, const Shape& s, int M, double peak,
               std::mt19937& rng) {
  const size_t bytes = static_cast<size_t>(s.n) * row_bytes(t, s.k);
  const std::vector<uint8_t> host = random_weight(t, s.n, s.k, rng);
  auto* w = device_alloc<uint8_t>(bytes);
  ok(cudaMemcpy(w, host.data(), bytes, cudaMemcpyHostToDevice), "H2D");
  auto* x = device_alloc<float>(static_cast<size_t>(M) * s.k);
  ok(cudaMemset(x, 0, static_cast<size_t>(M) * s.k * 4), "memset");
  auto* y = device_alloc<float>(static_cast<size_t>(M) * s.n);
  const auto path = plan::choose_path(t.dt, M);
  const auto sc = plan::gemm_scratch(path, M, s.n, s.k);
  auto* scratch = device_alloc<uint8_t>(std::max<size_t>(sc.bytes, 1));
  auto* tile = reinterpret_cast<__half*>(scratch + sc.tile_offset);
  const float one = 1.f, zero = 0.f;
  const double us = median_us([&](int) {
    ok(k::launch_cast_activations(scratch, false, x, static_cast<long>(M) * s.k, nullptr), "cast");
    if (path == plan::MatmulPath::kGemmHalf) {
      ok_blas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.n, M, s.k, &one, w, CUDA_R_16F, s.k,
                           scratch, CUDA_R_16F, s.k, &zero, y, CUDA_R_32F, s.n, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
              "gemm");
      return;
    }
    for (int64_t n0 = 0; n0 < s.n; n0 += sc.tile_columns) {
      const int cols = static_cast<int>(std::min<int64_t>(sc.tile_columns, s.n - n0));
      ok(k::launch_dequantize_f16(tile, w, t.wt, row_bytes(t, s.k), n0, cols, s.k, nullptr),
         "dequantize");
      ok_blas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, cols, M, s.k, &one, tile, CUDA_R_16F, s.k,
                           scratch, CUDA_R_16F, s.k, &zero, y + n0, CUDA_R_32F, s.n,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "gemm");
    }
  });
  const double tflops = 2.0 * M * static_cast<double>(s.n) * s.k / (us * 1e-6) / 1e12;
  std::printf("gemm M=%d %-11s %5dx%-5d %-5s %9.1f us %8.1f TFLOP/s %5.1f%% of peak (%s)\n", M,
              s.what, s.n, s.k, t.name, us, tflops, 100.0 * tflops / peak, plan::path_name(path));
  cudaFree(w);
  cudaFree(x);
  cudaFree(y);
  cudaFree(scratch);
}

}  // namespace

void matmul_cases(std::mt19937& rng) {
  const double copy_gbs = copy_bandwidth();
  std::printf("device-to-device copy: %.1f GB/s (read + written)\n", copy_gbs);
  for (const Shape& s : kShapes)
    for (const Type& t : kTypes) gemv_case(t, s, copy_gbs, rng);
  cublasHandle_t h = nullptr;
  ok_blas(cublasCreate(&h), "cublasCreate");
  const double peak = gemm_peak(h);
  std::printf("cublasGemmEx fp16 8192^3: %.1f TFLOP/s\n", peak);
  for (const Shape& s : kShapes)
    for (const Type& t : kTypes) gemm_case(h, t, s, 512, peak, rng);
  cublasDestroy(h);
}
