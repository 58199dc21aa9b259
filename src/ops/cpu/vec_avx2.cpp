// AVX2 vector kernels for the element-wise ops and the dequantizers (see simd.h). Compiled for
// AVX2+FMA+F16C via a target pragma and reached only through have_avx2() checks.
#include <cmath>
#include <cstring>

#include "simd.h"
#include "tessera/core/half.h"
#include "tessera/ops/ops.h"

// clang ignores GCC's target pragma; its own attribute pragma does the same for every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include "avx2_common.h"

namespace tessera::ops::cpu::detail {

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void rms_norm_row_avx2(const float* x, const float* w, float eps, int64_t n, float* out) {
  const float ss = dot_f32_avx2(x, x, n);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const __m256 vi = _mm256_set1_ps(inv);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vi), _mm256_loadu_ps(w + i)));
  for (; i < n; ++i) out[i] = x[i] * inv * w[i];
}

void add_avx2(float* x, const float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) x[i] += y[i];
}

void silu_mul_avx2(const float* g, const float* u, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

float exp_sum_inplace_avx2(float* x, int64_t n, float sub) {
  const __m256 vs = _mm256_set1_ps(sub);
  __m256 vsum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum256(vsum);
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - sub));
  return sum;
}

float max_avx2(const float* x, int64_t n, float init) {
  // maxps returns its second operand when either is NaN: with the running maximum second, a NaN
  // element is skipped, as std::fmax skips it.
  __m256 vm = _mm256_set1_ps(init);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm);
  float m = hmax256(vm);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

void softmax_row_avx2(float* x, int64_t n) {
  if (n <= 0) return;
  const float max = max_avx2(x, n, -INFINITY);
  scale_avx2(1.0f / exp_sum_inplace_avx2(x, n, max), x, n);
}

void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void scale_avx2(float a, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] *= a;
}

void block_sums_avx2(const float* x, int64_t n, float* sums) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* p = x + b * 32;
    const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)),
                                   _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)));
    sums[b] = hsum256(s);
  }
}

void dequantize_row_avx2(DType type, const void* src, float* dst, int64_t n) {
  const __m128i m4 = _mm_set1_epi8(0x0f);
  switch (type) {
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
      for (; i < n; ++i) dst[i] = fp16_to_f32(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        const __m256i v =
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      }
      for (; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
      return;
    }
    case DType::kQ8_0: {
      const auto* blk = static_cast<const BlockQ8_0*>(src);
      for (int64_t b = 0; b < n / 32; ++b) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d));
        for (int j = 0; j < 32; j += 8) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk[b].qs + j));
          _mm256_storeu_ps(dst + b * 32 + j,
                           _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
        }
      }
      return;
    }
    case DType::kQ4_0:
    case DType::kQ4_1: {
      const bool q41 = type == DType::kQ4_1;
      const size_t bytes = q41 ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
      for (int64_t b = 0; b < n / 32; ++b) {
        const auto* base = static_cast<const uint8_t*>(src) + static_cast<size_t>(b) * bytes;
        uint16_t dh, mh = 0;
        std::memcpy(&dh, base, 2);
        if (q41) std::memcpy(&mh, base + 2, 2);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
        const __m256 m =
            q41 ? _mm256_set1_ps(_cvtsh_ss(mh)) : _mm256_set1_ps(-8.0f * _cvtsh_ss(dh));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + (q41 ? 4 : 2)));
        const __m128i lo = _mm_and_si128(raw, m4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int j = 0; j < 4; ++j) {
          const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[j]));
          // q*d + m with m = -8d for Q4_0: (q-8)*d exactly as the reference when d*8 is exact.
          _mm256_storeu_ps(dst + b * 32 + j * 8,
                           q41 ? _mm256_fmadd_ps(q, d, m)
                               : _mm256_mul_ps(_mm256_sub_ps(q, _mm256_set1_ps(8.0f)), d));
        }
      }
      return;
    }
    default:
      if (is_kquant(type)) return dequantize_kquant_avx2(type, src, dst, n);
      if (type == DType::kQ5_0 || type == DType::kQ5_1)
        return dequantize_q5_avx2(type, src, dst, n);
      ref::dequantize_row(type, src, dst, n);
      return;
  }
}

}  // namespace tessera::ops::cpu::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
