// ops::cpu::matmul: y[M,N] = x[M,K] . w[N,K]^T + bias. Q4_0..Q8_0 and Q2_K..Q6_K weights take
// the integer path (matmul_int8.cpp) unless the process chose fp32 activations; otherwise two
// regimes:
//  - small M (decode, M <= kMaxFusedM): memory-bound, so each weight row is streamed once, still
//    quantized, through the fused AVX2 kernels of matvec_avx2.cpp (activation rows in groups of
//    up to 8 while the row chunk sits in L1); the pool (parallel.h) splits the N rows.
//  - large M (prefill): compute-bound, so panels of weight rows are dequantized to f32 into a
//    per-thread buffer and multiplied with cblas_sgemm. The pool splits the panels and OpenBLAS is
//    kept at one thread, so the two thread pools never oversubscribe the cores.
#include <algorithm>
#include <mutex>
#include <vector>

#include "../check.h"
#include "int8_dot.h"
#include "packed.h"
#include "parallel.h"
#include "simd.h"

#if defined(TESSERA_HAVE_BLAS)
#include <cblas.h>
#endif

namespace tessera::ops::cpu {
namespace {

constexpr int kGroupRows = 8;  // activation rows one fused kernel call handles
// Up to this M one pass over the weights (8 activation rows sharing each unpacked block) beats
// dequantize + sgemm (ops_bench BM_MatmulRows, Q4_1 1536x576, one Zen 1 core).
constexpr int64_t kMaxFusedM = 8;
// Weight bytes per pool chunk in the fused path: big enough to amortise the claim (~100 ns),
// small enough to balance threads and stay in L1 while every activation group passes over it.
constexpr int64_t kChunkBytes = 16 << 10;
// Below this many weight bytes a call is too small to be worth waking the pool.
constexpr int64_t kParallelMinBytes = 32 << 10;
// Weight rows dequantized per sgemm call. OpenBLAS (0.3.21, Zen kernels) is oddly slow for
// panels of 64-288 rows: one core, M=64, Q4_1: 1536x576 takes 4.2 ms with 24-row panels, 6.6 ms
// with 64, 9-10 ms with 128-288, 4.8 ms with 512. Small panels also balance threads well.
constexpr int64_t kPanelRows = 24;

// Types some fused kernel unpacks in registers (matvec_avx2.cpp, q5_avx2.cpp, kquant_avx2.cpp);
// others are dequantized row by row into scratch.
bool fused_type(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 ||
         t == DType::kQ5_1 || is_kquant(t);
}
// Types whose kernels add min * sum(x) per 32-element block from precomputed activation sums.
bool needs_block_sums(DType t) {
  return t == DType::kQ4_1 || t == DType::kQ5_1 || t == DType::kQ4_K || t == DType::kQ5_K;
}

void matmul_fused(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                  const ops::detail::MatmulShape& s) {
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  const int64_t nb = s.k / 32;
  // Packed weights (made for the int8 path, met here when the process switched to fp32
  // activations after loading) are unpacked a group of rows at a time into the base layout.
  const bool packed = is_packed(w.dtype());
  const DType wtype = packed_base(w.dtype());
  const size_t base_row_bytes = tessera::row_bytes(wtype, s.k);  // of the rows the kernels read
  std::vector<float> xsum;
  if (needs_block_sums(wtype)) {
    xsum.resize(static_cast<size_t>(s.m * nb));
    for (int64_t m = 0; m < s.m; ++m)
      detail::block_sums_avx2(xp + m * s.k, s.k, xsum.data() + m * nb);
  }
  const auto row_bytes = static_cast<int64_t>(w.row_bytes());
  const int64_t rows_per_chunk =
      packed ? kPackRows : std::max<int64_t>(4, kChunkBytes / std::max<int64_t>(1, row_bytes));
  const int64_t chunks = (s.n + rows_per_chunk - 1) / rows_per_chunk;
  const bool kquant = is_kquant(wtype);
  const bool q5 = wtype == DType::kQ5_0 || wtype == DType::kQ5_1;
  const bool scratch_needed = !fused_type(wtype) && wtype != DType::kF32;
  detail::parallel_for(
      chunks,
      [&](int64_t c) {
        std::vector<float> scratch(scratch_needed ? static_cast<size_t>(s.k) : 0);
        int64_t n0 = c * rows_per_chunk, n1 = std::min(s.n, n0 + rows_per_chunk);
        const uint8_t* wp = static_cast<const uint8_t*>(w.data());
        int64_t col0 = 0;  // the output column of row 0 of wp
        thread_local std::vector<uint8_t> unpacked;
        if (packed) {
          unpacked.resize(static_cast<size_t>(kPackRows) * base_row_bytes);
          detail::unpack_rows(wtype, w.row_ptr(n0), kPackRows, s.k, unpacked.data());
          wp = unpacked.data();
          col0 = n0;
          n0 = 0;
          n1 = kPackRows;
        }
        for (int64_t m0 = 0; m0 < s.m; m0 += kGroupRows) {
          detail::MatvecArgs a;
          a.wtype = wtype;
          a.w = wp;
          a.w_row_bytes = base_row_bytes;
          a.x = xp + m0 * s.k;
          a.xsum = xsum.empty() ? nullptr : xsum.data() + m0 * nb;
          a.m_count = static_cast<int>(std::min<int64_t>(kGroupRows, s.m - m0));
          a.k = s.k;
          a.y = yp + m0 * s.n + col0;
          a.ldy = s.n;
          a.bias = bias.defined() ? bias.data_as<float>() + col0 : nullptr;
          a.scratch = scratch.data();
          if (kquant)
            detail::kquant_rows_avx2(a, n0, n1);
          else if (q5)
            detail::q5_rows_avx2(a, n0, n1);
          else
            detail::matvec_rows_avx2(a, n0, n1);
        }
      },
      s.n * row_bytes >= kParallelMinBytes);
}

#if defined(TESSERA_HAVE_BLAS)
void matmul_blas(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                 const ops::detail::MatmulShape& s) {
  // Parallelism comes from the pool below; a multi-threaded sgemm inside it would oversubscribe.
  // Set once: the call is not free, and nothing else in the process uses BLAS threads.
  static std::once_flag blas_single;
  std::call_once(blas_single, [] { openblas_set_num_threads(1); });
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  const bool is_f32 = w.dtype() == DType::kF32;
  const int64_t panels = (s.n + kPanelRows - 1) / kPanelRows;
  detail::parallel_for(panels, [&](int64_t t) {
    // One panel buffer per pool thread, reused across calls: allocating it per panel cost a
    // fresh mmap and page faults every time (it is larger than malloc's mmap threshold).
    thread_local std::vector<float> panel;
    const int64_t n0 = t * kPanelRows, nt = std::min(kPanelRows, s.n - n0);
    const float* b = nullptr;
    if (is_f32) {
      b = reinterpret_cast<const float*>(w.row_ptr(n0));
    } else {
      if (panel.size() < static_cast<size_t>(kPanelRows * s.k))
        panel.resize(static_cast<size_t>(kPanelRows * s.k));
      for (int64_t r = 0; r < nt; ++r)
        cpu::dequantize_row(w.dtype(), w.row_ptr(n0 + r), panel.data() + r * s.k, s.k);
      b = panel.data();
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s.m),
                static_cast<int>(nt), static_cast<int>(s.k), 1.0f, xp, static_cast<int>(s.k), b,
                static_cast<int>(s.k), 0.0f, yp + n0, static_cast<int>(s.n));
    if (bias.defined()) {
      const float* bp = bias.data_as<float>() + n0;
      for (int64_t m = 0; m < s.m; ++m)
        for (int64_t j = 0; j < nt; ++j) yp[m * s.n + n0 + j] += bp[j];
    }
  });
}
#endif

}  // namespace

// The fused kernels and the int8 path compute each output row from its own activation row with
// one fixed order of the K sums, whatever the group size; sgemm does not: OpenBLAS's blocking
// (and so the summation order of an element) depends on M (row_split_test saw 1-ulp differences
// for M = 18..64 cut in halves). So a cut is exact only where the whole and both parts take the
// fused path. The other row-wise CPU ops have no row-count regimes.
int64_t exact_row_split(int64_t rows) { return rows >= 2 && rows <= kMaxFusedM ? rows / 2 : 0; }

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  ops::detail::require_host("matmul", {&x, &w, &bias, &y});
  const auto s = ops::detail::check_matmul("matmul", x, w, bias, y);
  if (s.m == 0 || s.n == 0) return;
  if (detail::use_int8(w.dtype())) return detail::matmul_int8(x, w, bias, y, s.m, s.n, s.k);
  if (is_packed(w.dtype())) {
    // pack_weight packs only where the int8 kernels run, i.e. on AVX2 and up.
    TESSERA_CHECK(detail::have_avx2(), "packed weights on a CPU without AVX2");
    return matmul_fused(x, w, bias, y, s);
  }
#if defined(TESSERA_HAVE_BLAS)
  if (s.m > kMaxFusedM) return matmul_blas(x, w, bias, y, s);
#endif
  if (!detail::have_avx2()) return ref::matmul(x, w, bias, y);
  matmul_fused(x, w, bias, y, s);
}

void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets) {
  // One integer pass for two or more targets, or for one that wants the second digit; targets
  // that differ in fine_activations go one by one.
  const bool fine = !targets.empty() && targets[0].fine_activations;
  bool merged = targets.size() > 1 || fine;
  for (const MatmulTarget& t : targets)
    merged = merged && detail::use_int8(t.w->dtype()) && t.fine_activations == fine;
  if (!merged) {
    for (const MatmulTarget& t : targets) {
      if (t.fine_activations && targets.size() > 1)
        matmul_many(x, {&t, 1});
      else
        matmul(x, *t.w, *t.bias, *t.y);
    }
    return;
  }
  for (const MatmulTarget& t : targets) {
    ops::detail::require_host("matmul_many", {&x, t.w, t.bias, t.y});
    ops::detail::check_matmul("matmul_many", x, *t.w, *t.bias, *t.y);
  }
  const int64_t m = ops::detail::rows_of(x);
  if (m == 0) return;
  detail::matmul_int8_many(x, targets, m, ops::detail::cols_of(x));
}

}  // namespace tessera::ops::cpu
