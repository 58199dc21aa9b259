// ops::cpu::matmul: y[M,N] = x[M,K] . w[N,K]^T + bias. Two regimes:
//  - small M (decode, M <= 4): memory-bound, so each weight row is streamed once, still
//    quantized, through the fused AVX2 kernels of matvec_avx2.cpp; OpenMP splits the N rows.
//  - large M (prefill): compute-bound, so tiles of 64 weight rows are dequantized to f32 into a
//    per-thread buffer and multiplied with cblas_sgemm. OpenMP splits the tiles and OpenBLAS is
//    kept at one thread, so the two thread pools never oversubscribe the cores.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "../check.h"
#include "simd.h"

#if defined(TESSERA_HAVE_BLAS)
#include <cblas.h>
#endif

namespace tessera::ops::cpu {
namespace {

constexpr int kMaxFusedRows = 4;   // activation rows one fused pass handles
constexpr int64_t kRowChunk = 8;   // weight rows per OpenMP work item in the fused path
constexpr int64_t kTileRows = 64;  // weight rows dequantized per sgemm call
// Below this many weight elements a call is too small to be worth waking the thread team.
constexpr int64_t kParallelMinElems = 1 << 15;

void matmul_fused(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                  const ops::detail::MatmulShape& s) {
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  std::vector<float> xsum;
  if (w.dtype() == DType::kQ4_1) {
    xsum.resize(static_cast<size_t>(s.m * (s.k / 32)));
    for (int64_t m = 0; m < s.m; ++m)
      detail::block_sums_avx2(xp + m * s.k, s.k, xsum.data() + m * (s.k / 32));
  }
  const int64_t chunks = (s.n + kRowChunk - 1) / kRowChunk;
  const bool parallel = s.n * s.k >= kParallelMinElems;
#pragma omp parallel if (parallel)
  {
    std::vector<float> scratch(static_cast<size_t>(s.k));
    for (int64_t m0 = 0; m0 < s.m; m0 += kMaxFusedRows) {
      detail::MatvecArgs a;
      a.wtype = w.dtype();
      a.w = static_cast<const uint8_t*>(w.data());
      a.w_row_bytes = w.row_bytes();
      a.x = xp + m0 * s.k;
      a.xsum = xsum.empty() ? nullptr : xsum.data() + m0 * (s.k / 32);
      a.m_count = static_cast<int>(std::min<int64_t>(kMaxFusedRows, s.m - m0));
      a.k = s.k;
      a.y = yp + m0 * s.n;
      a.ldy = s.n;
      a.bias = bias.defined() ? bias.data_as<float>() : nullptr;
      a.scratch = scratch.data();
#pragma omp for schedule(static)
      for (int64_t c = 0; c < chunks; ++c)
        detail::matvec_rows_avx2(a, c * kRowChunk, std::min(s.n, (c + 1) * kRowChunk));
    }
  }
}

#if defined(TESSERA_HAVE_BLAS)
void matmul_blas(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                 const ops::detail::MatmulShape& s) {
  // Parallelism comes from OpenMP below; a multi-threaded sgemm inside it would oversubscribe.
  openblas_set_num_threads(1);
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  const bool is_f32 = w.dtype() == DType::kF32;
  const int64_t tiles = (s.n + kTileRows - 1) / kTileRows;
#pragma omp parallel
  {
    std::vector<float> tile(is_f32 ? 0 : static_cast<size_t>(kTileRows * s.k));
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t n0 = t * kTileRows, nt = std::min(kTileRows, s.n - n0);
      const float* b = nullptr;
      if (is_f32) {
        b = reinterpret_cast<const float*>(w.row_ptr(n0));
      } else {
        for (int64_t r = 0; r < nt; ++r)
          cpu::dequantize_row(w.dtype(), w.row_ptr(n0 + r), tile.data() + r * s.k, s.k);
        b = tile.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s.m),
                  static_cast<int>(nt), static_cast<int>(s.k), 1.0f, xp, static_cast<int>(s.k), b,
                  static_cast<int>(s.k), 0.0f, yp + n0, static_cast<int>(s.n));
      if (bias.defined()) {
        const float* bp = bias.data_as<float>() + n0;
        for (int64_t m = 0; m < s.m; ++m)
          for (int64_t j = 0; j < nt; ++j) yp[m * s.n + n0 + j] += bp[j];
      }
    }
  }
}
#endif

}  // namespace

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const auto s = ops::detail::check_matmul("matmul", x, w, bias, y);
  if (s.m == 0 || s.n == 0) return;
#if defined(TESSERA_HAVE_BLAS)
  if (s.m > kMaxFusedRows) return matmul_blas(x, w, bias, y, s);
#endif
  if (!detail::have_avx2()) return ref::matmul(x, w, bias, y);
  matmul_fused(x, w, bias, y, s);
}

}  // namespace tessera::ops::cpu
