// Private to the CPU ops: run-time SIMD selection and the AVX2 building blocks the kernels share.
// Everything AVX2 is compiled with a target pragma (the library itself is built for baseline
// x86-64), and only called after have_avx2() said the CPU has AVX2+FMA+F16C. Holds no state
// beyond the immutable CPU probe.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "tessera/core/dtype.h"

namespace tessera::ops::cpu::detail {

// AVX2 + FMA + F16C present (probed once; the answer never changes).
bool have_avx2();

// --- AVX2 kernels (defined in *_avx2.cpp files, call only when have_avx2()) ---

// Shared arguments of the small-M (decode) matmul kernel: y[m, n] for n in [n0, n1), m < m_count.
struct MatvecArgs {
  DType wtype = DType::kF32;
  const uint8_t* w = nullptr;  // row n at w + n * w_row_bytes
  size_t w_row_bytes = 0;
  const float* x = nullptr;     // [m_count, k]
  const float* xsum = nullptr;  // [m_count, k/32] block sums of x (Q4_1, Q5_1, Q4_K, Q5_K)
  int m_count = 0;              // 1..8
  int64_t k = 0;
  float* y = nullptr;  // row m at y + m * ldy
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
  float* scratch = nullptr;     // k floats, for types dequantized to f32 first
};
void matvec_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1);
// The same for K-quant weights (kquant_avx2.cpp; Q4_K / Q5_K read xsum).
void kquant_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1);
void dequantize_kquant_avx2(DType type, const void* src, float* dst, int64_t n);  // n % 256 == 0
// Q5_0 / Q5_1 (q5_avx2.cpp; Q5_1 reads xsum).
void q5_rows_avx2(const MatvecArgs& a, int64_t n0, int64_t n1);
void dequantize_q5_avx2(DType type, const void* src, float* dst, int64_t n);
void dequantize_row_avx2(DType type, const void* src, float* dst, int64_t n);
void block_sums_avx2(const float* x, int64_t n, float* sums);  // n % 32 == 0

float dot_f32_avx2(const float* a, const float* b, int64_t n);
void rms_norm_row_avx2(const float* x, const float* w, float eps, int64_t n, float* out);
void add_avx2(float* x, const float* y, int64_t n);
void silu_mul_avx2(const float* g, const float* u, float* out, int64_t n);
void softmax_row_avx2(float* x, int64_t n);
// x[i] = exp(x[i] - sub); returns the sum of the new x (8 lane sums, then the tail in order).
float exp_sum_inplace_avx2(float* x, int64_t n, float sub);
float max_avx2(const float* x, int64_t n, float init);         // max(init, x[0..n)), NaNs skipped
void axpy_avx2(float a, const float* x, float* y, int64_t n);  // y += a * x
void scale_avx2(float a, float* y, int64_t n);                 // y *= a
// Paged attention (attention_avx2.cpp), head_dim hd % 8 == 0, keys/values one pointer per key to
// a cache row of type t (F32, F16 or BF16, widened in registers: exact, so the arithmetic is the
// F32 cache's on the same values), for `group` query heads sharing the keys (q and acc: group rows
// of hd; s and w: group rows ss / ws apart): s[g*ss + i] = scale * (q_g . keys[i]) for i < n;
// acc[g*hd + (0, hd)] += sum_i w[g*ws + i] * vals[i][0, hd). Each head's arithmetic is the same
// whatever the group size.
void dot_keys_avx2(DType t, const float* q, int group, const void* const* keys, int64_t n, int hd,
                   float scale, float* s, int64_t ss);
void axpy_keys_avx2(DType t, const float* w, int64_t ws, int group, const void* const* vals,
                    int64_t n, int hd, float* acc);
// KV cache rows of type t (F32/F16/BF16, ops/kv_rows.h): the scalar converters' bits for every
// value but NaN payloads (F16C for fp16; bf16 loads are a shift, stores stay scalar).
void kv_store_row_avx2(DType t, const float* src, void* dst, int64_t n);
void kv_load_row_avx2(DType t, const void* src, float* dst, int64_t n);

}  // namespace tessera::ops::cpu::detail
