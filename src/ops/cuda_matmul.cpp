// The CUDA table's matmul: y[M, N] = x[M, K] * w[N, K]^T (+ bias), on the path cuda_plan picks.
//  - decode GEMV (kernels/gemv.cu) for M <= kGemvMaxRows: int8 activations quantized once per
//    call into stream-ordered scratch for the 32-element block formats, fp32 otherwise;
//  - cuBLAS for larger M: SGEMM on F32 weights, GemmEx (fp32 compute) on F16/BF16 weights with the
//    activations cast to the same type, and for the quantized types fp16 tiles of weight rows
//    (bounded scratch, kDequantTileBytes) dequantized then multiplied tile by tile.
// fp16 activations keep 11 bits (bf16: 8) but overflow past 65504; the inputs of a llama-family
// matmul (normed hidden states, SiLU(gate) x up) normally stay well below it; the parity tests
// bound the rounding (tests/ops/matmul_bounds.h). The activation copy is M x K x 2 bytes of
// scratch, unbounded like the activations themselves; only the weight tiles are capped. Owns one
// cuBLAS handle per device (created on first use under a lock, bound to the call's stream before
// each use, never destroyed: destroying at exit would race the CUDA runtime's own teardown). Builds
// without cuBLAS (TESSERA_HAVE_CUBLAS unset) run every M on the GEMV, kGemvMaxRows rows a pass.
// None of this has run on a GPU yet; tests/ops/cuda_matmul_test.cpp holds the parity cases.
#include "cuda_matmul_plan.h"  // outside the #if: a build without CUDA compiles a non-empty file

#if TESSERA_HAVE_CUDA
#include <algorithm>
#include <map>
#include <mutex>

#include "check.h"
#include "cuda_common.h"
#include "tessera/kernels/matmul.h"

#if TESSERA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace tessera::ops::cuda {
namespace {

static_assert(cuda_plan::kGemvMaxRows == kernels::kGemvMaxRows);
constexpr const char* kOp = "matmul";

#if TESSERA_HAVE_CUBLAS
void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(ErrorCode::kInternal, kOp, ": ", what, " failed: ", cublasGetStatusName(s), " (",
         cublasGetStatusString(s), ")");
}

// The handle of the current device (DeviceScope made it current).
cublasHandle_t blas_handle(int device) {
  static std::mutex mu;
  static auto* handles = new std::map<int, cublasHandle_t>();  // intentionally never freed
  std::lock_guard lock(mu);
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  cublasHandle_t h = nullptr;
  check_blas(cublasCreate(&h), "cublasCreate");
  // Default math: no TF32 for SGEMM, so F32 weights keep the fp32 reference's precision.
  check_blas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  handles->emplace(device, h);
  return h;
}

// Row-major y[M, N] = x[M, K] w[N, K]^T is column-major y^T[N, M] = w^T' . x^T: A = w read
// transposed (lda K), B = x (ldb K), C = y (ldc N). `cols` columns of y from column n0.
void gemm_ex(cublasHandle_t h, const void* a, cudaDataType at, const void* b, cudaDataType bt,
             float* y, int n0, int cols, int M, int N, int K, float beta) {
  const float one = 1.f;
  check_blas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, cols, M, K, &one, a, at, K, b, bt, K, &beta,
                          y + n0, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

// beta 0: y = x w^T; beta 1: y += x w^T (cuBLAS's C = A B + beta C).
void gemm(cuda_plan::MatmulPath path, const float* x, const Tensor& w, kernels::WeightType t,
          float* y, int M, int N, int K, int device, float beta, cudaStream_t stream) {
  using cuda_plan::MatmulPath;
  cublasHandle_t h = blas_handle(device);
  check_blas(cublasSetStream(h, stream), "cublasSetStream");
  if (path == MatmulPath::kGemmF32) {
    const float one = 1.f;
    check_blas(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w.data_as<float>(), K, x, K,
                           &beta, y, N),
               "cublasSgemm");
    return;
  }
  const auto plan = cuda_plan::gemm_scratch(path, M, N, K);
  Scratch scratch(plan.bytes, kOp, stream);
  const bool bf16 = path == MatmulPath::kGemmHalf && w.dtype() == DType::kBF16;
  const cudaDataType ht = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  check(kernels::launch_cast_activations(scratch.get(), bf16, x, static_cast<long>(M) * K, stream),
        kOp, "cast activations");
  if (path == MatmulPath::kGemmHalf) {
    gemm_ex(h, w.data(), ht, scratch.get(), ht, y, 0, N, M, N, K, beta);
    return;
  }
  auto* tile = reinterpret_cast<__half*>(scratch.get() + plan.tile_offset);
  for (int64_t n0 = 0; n0 < N; n0 += plan.tile_columns) {
    const int cols = static_cast<int>(std::min<int64_t>(plan.tile_columns, N - n0));
    // Stream order: this dequantization waits for the previous tile's GEMM to finish reading.
    check(kernels::launch_dequantize_f16(tile, w.data(), t, w.row_bytes(), n0, cols, K, stream),
          kOp, "dequantize tile");
    gemm_ex(h, tile, CUDA_R_16F, scratch.get(), CUDA_R_16F, y, static_cast<int>(n0), cols, M, N, K,
            beta);
  }
}
#endif

// Passes of at most kGemvMaxRows rows through the GEMV (one pass for a decode step).
void gemv(bool int8, const float* x, const Tensor& w, kernels::WeightType t, const float* bias,
          float* y, int M, int N, int64_t K, bool accumulate, cudaStream_t stream) {
  const int pass = static_cast<int>(std::min<int64_t>(M, kernels::kGemvMaxRows));
  const auto q8 = cuda_plan::q8_scratch(int8 ? pass : 0, K);
  Scratch scratch(q8.bytes, kOp, stream);
  auto* qs = reinterpret_cast<int8_t*>(scratch.get());
  auto* ds = reinterpret_cast<float2*>(scratch.get() + q8.ds_offset);
  kernels::GemvArgs a{
      .w = w.data(),
      .type = t,
      .row_bytes = w.row_bytes(),
      .bias = bias,
      .N = N,
      .K = K,
      .vector_loads = cuda_plan::vector_loads(reinterpret_cast<uintptr_t>(w.data()), w.row_bytes()),
      .xq = int8 ? qs : nullptr,
      .xds = int8 ? ds : nullptr,
      .accumulate = accumulate};
  for (int r0 = 0; r0 < M; r0 += pass) {
    a.M = std::min(pass, M - r0);
    a.x = x + static_cast<int64_t>(r0) * K;
    a.y = y + static_cast<int64_t>(r0) * N;
    if (int8) check(kernels::launch_quantize_q8(qs, ds, a.x, a.M, K, stream), kOp, "quantize");
    check(kernels::launch_gemv(a, stream), kOp, "gemv launch");
  }
}

// y = x w^T + bias, or (accumulate) y += x w^T + bias: the GEMV adds in its epilogue, cuBLAS with
// beta = 1 (a bias then goes on after, so its rounding order differs from a separate add's).
void run_matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, bool accumulate,
                cudaStream_t stream) {
  DeviceScope scope(kOp, x);
  const kernels::WeightType t = weight_type_of(w);
  const int M = narrow(detail::rows_of(x), kOp, "rows");
  const int N = narrow(w.dim(0), kOp, "columns");
  const int64_t K = w.dim(1);
  if (M == 0 || N == 0) return;
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  const float* bp = bias.defined() ? bias.data_as<float>() : nullptr;
  const auto path = cuda_plan::choose_path(w.dtype(), M, cuda_plan::build_has_gemm());
  using cuda_plan::MatmulPath;
  if (path == MatmulPath::kGemvInt8 || path == MatmulPath::kGemvF32) {
    gemv(path == MatmulPath::kGemvInt8, xp, w, t, bp, yp, M, N, K, accumulate, stream);
    return;
  }
#if TESSERA_HAVE_CUBLAS
  gemm(path, xp, w, t, yp, M, N, narrow(K, kOp, "inner dimension"), scope.device(),
       accumulate ? 1.f : 0.f, stream);
  if (bp) check(kernels::launch_add_bias(yp, bp, M, N, stream), kOp, "bias");
#endif
}

}  // namespace

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  run_matmul(x, w, bias, y, false, static_cast<cudaStream_t>(stream_of(x)));
}

void matmul_on(cudaStream_t stream, const Tensor& x, const Tensor& w, Tensor& y) {
  run_matmul(x, w, Tensor(), y, false, stream);
}

namespace {

// Whether a step of `rows` rows takes the int8 GEMV for every target (one quantization of the
// activations then serves them all).
bool all_int8_gemv(int64_t rows, std::span<const MatmulTarget> targets) {
  bool ok = rows >= 1 && rows <= kernels::kGemvMaxRows && !targets.empty();
  for (const MatmulTarget& t : targets)
    ok = ok &&
         cuda_plan::choose_path(t.w->dtype(), static_cast<int>(rows),
                                cuda_plan::build_has_gemm()) == cuda_plan::MatmulPath::kGemvInt8;
  return ok;
}

// Quantizes M x K activations once (quantize(qs, ds) enqueues the quantizer of the caller's
// choice) and runs every target's int8 GEMV on them; x is only named for the arguments.
template <typename Quantize>
void quantized_gemvs(const DeviceScope& scope, const float* x, int M, int64_t K,
                     std::span<const MatmulTarget> targets, bool accumulate, Quantize&& quantize) {
  const auto q8 = cuda_plan::q8_scratch(M, K);
  Scratch scratch(q8.bytes, kOp, scope.stream());
  auto* qs = reinterpret_cast<int8_t*>(scratch.get());
  auto* ds = reinterpret_cast<float2*>(scratch.get() + q8.ds_offset);
  check(quantize(qs, ds), kOp, "quantize");
  for (const MatmulTarget& t : targets) {
    const Tensor& w = *t.w;
    const int N = narrow(w.dim(0), kOp, "columns");
    if (N == 0) continue;
    kernels::GemvArgs a{.y = t.y->data_as<float>(),
                        .x = x,
                        .w = w.data(),
                        .type = weight_type_of(w),
                        .row_bytes = w.row_bytes(),
                        .bias = t.bias->defined() ? t.bias->data_as<float>() : nullptr,
                        .M = M,
                        .N = N,
                        .K = K,
                        .vector_loads = cuda_plan::vector_loads(
                            reinterpret_cast<uintptr_t>(w.data()), w.row_bytes()),
                        .xq = qs,
                        .xds = ds,
                        .accumulate = accumulate};
    check(kernels::launch_gemv(a, scope.stream()), kOp, "gemv launch");
  }
}

}  // namespace

// A decode step (at most kGemvMaxRows rows) whose targets all take the int8 GEMV quantizes the
// activations once and launches each target's GEMV on them; anything else runs target by target.
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets) {
  const int64_t rows = detail::rows_of(x);
  if (targets.size() < 2 || !all_int8_gemv(rows, targets)) {
    for (const MatmulTarget& t : targets)
      run_matmul(x, *t.w, *t.bias, *t.y, false, static_cast<cudaStream_t>(stream_of(x)));
    return;
  }
  DeviceScope scope(kOp, x);
  const int M = static_cast<int>(rows);
  const int64_t K = detail::cols_of(x);
  quantized_gemvs(scope, x.data_as<float>(), M, K, targets, false, [&](int8_t* qs, float2* ds) {
    return kernels::launch_quantize_q8(qs, ds, x.data_as<float>(), M, K, scope.stream());
  });
}

// RMSNorm fused into the int8 GEMVs' quantizer (the normed rows are never written); false for a
// step the int8 GEMV does not take (the dispatcher composes rms_norm and matmul_many).
bool rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps,
                          std::span<const MatmulTarget> targets) {
  const int64_t rows = detail::rows_of(x);
  if (!all_int8_gemv(rows, targets)) return false;
  DeviceScope scope(kOp, x);
  const int M = static_cast<int>(rows);
  const int64_t K = detail::cols_of(x);
  quantized_gemvs(scope, x.data_as<float>(), M, K, targets, false, [&](int8_t* qs, float2* ds) {
    return kernels::launch_rms_norm_quantize_q8(qs, ds, x.data_as<float>(), norm.data_as<float>(),
                                                eps, M, K, scope.stream());
  });
  return true;
}

// SiLU x up fused into the down projection's quantizer (silu(gate) * up never written).
bool silu_mul_matmul(const Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& /*scratch: the GEMV adds in its epilogue*/, Tensor& y,
                     bool accumulate) {
  const int64_t rows = detail::rows_of(gate);
  const Tensor none;
  const MatmulTarget target{&w, bias.defined() ? &bias : &none, &y};
  if (!all_int8_gemv(rows, {&target, 1})) return false;
  DeviceScope scope(kOp, gate);
  const int M = static_cast<int>(rows);
  const int64_t K = detail::cols_of(gate);
  quantized_gemvs(scope, gate.data_as<float>(), M, K, {&target, 1}, accumulate,
                  [&](int8_t* qs, float2* ds) {
                    return kernels::launch_silu_mul_quantize_q8(
                        qs, ds, gate.data_as<float>(), up.data_as<float>(), M, K, scope.stream());
                  });
  return true;
}

void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& /*scratch*/,
                Tensor& y) {
  run_matmul(x, w, bias, y, true, static_cast<cudaStream_t>(stream_of(x)));
}

}  // namespace tessera::ops::cuda

#endif
