// Quantization of fp32 activations into int8 ActBlocks for the integer dot-product path
// (int8_dot.h), scalar and AVX2, plus the one-time choice of integer kernel from CPUID. The two
// quantizers do the same fp32 operations in the same order, so they give bitwise the same blocks
// and every integer kernel sees the same activations. Holds no state beyond the immutable probe.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "int8_dot.h"
#include "simd.h"

namespace tessera::ops::cpu::detail {

const char* int8_isa_name(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::kAmx:
      return "amx";
    case Int8Isa::kAvx512Vnni:
      return "avx512vnni";
    case Int8Isa::kAvxVnni:
      return "avxvnni";
    case Int8Isa::kAvx2:
      return "avx2";
    case Int8Isa::kScalar:
      break;
  }
  return "scalar";
}

// AVX-VNNI (VEX-encoded VPDPBUSD): CPUID leaf 7, sub-leaf 1, EAX bit 4. Read directly because
// older compilers' __builtin_cpu_supports does not know "avxvnni" (clang 14 rejects the name).
static bool cpuid_avx_vnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 4) & 1u;
}

// AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25), and the tile data state granted to
// this process: Linux hands it out only on request (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA, 18); without it the first tile instruction kills the process. Asked once;
// the grant is process-wide and covers threads started later.
static bool amx_granted() {
  static const bool kGranted = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1u) || !((d >> 25) & 1u))
      return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return kGranted;
}

bool cpu_has(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::kScalar:
      return true;
    case Int8Isa::kAvx2:
      return have_avx2();
    case Int8Isa::kAvxVnni:
      return have_avx2() && cpuid_avx_vnni();
    case Int8Isa::kAvx512Vnni:
      // The 256-bit VPDPBUSD form needs VL; BW for the byte shuffles under the same target.
      return have_avx2() && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
    case Int8Isa::kAmx:
      return cpu_has(Int8Isa::kAvx512Vnni) && amx_granted();
  }
  return false;
}

Int8Isa best_int8_isa() {
  static const Int8Isa kBest = [] {
    for (Int8Isa i : {Int8Isa::kAmx, Int8Isa::kAvx512Vnni, Int8Isa::kAvxVnni, Int8Isa::kAvx2})
      if (cpu_has(i)) return i;
    return Int8Isa::kScalar;
  }();
  return kBest;
}

bool int8_weight_type(DType t) {
  return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 || t == DType::kQ5_1 ||
         t == DType::kQ8_0;
}

bool int8_kquant_type(DType t) { return is_kquant(t); }  // every K-quant, Q2_K included

void int8_rows(Int8Isa isa, const Int8Args& a, int64_t n0, int64_t n1) {
  switch (isa) {
    case Int8Isa::kAmx:  // row-major weights: the AVX-512 VNNI kernel
    case Int8Isa::kAvx512Vnni:
      return int8_rows_avx512vnni(a, n0, n1);
    case Int8Isa::kAvxVnni:
      return int8_rows_avxvnni(a, n0, n1);
    case Int8Isa::kAvx2:
      return int8_rows_avx2(a, n0, n1);
    case Int8Isa::kScalar:
      break;
  }
  int8_rows_scalar(a, n0, n1);
}

void quantize_act_scalar(std::span<const float> x, std::span<ActBlock> out) {
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * 32;
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    ActBlock& o = out[b];
    o.d = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      // |xb[i] * id| <= 127 (up to rounding of id, which nearbyint absorbs), so no clamp needed.
      const int q = static_cast<int>(std::nearbyint(xb[i] * id));
      o.qs[i] = static_cast<int8_t>(q);
      sum += q;
    }
    o.s = o.d * static_cast<float>(sum);
  }
}

__attribute__((target("avx2,fma"))) void quantize_act_avx2(std::span<const float> x,
                                                           std::span<ActBlock> out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * 32;
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    ActBlock& o = out[b];
    o.d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_cvtps_epi32(
          _mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // Integer block sum, exact.
    const __m256i s4 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    o.s = o.d * static_cast<float>(_mm_cvtsi128_si32(s));
    // int32 -> int8 keeping element order: packs interleave the 128-bit lanes, permute undoes it.
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs), p8);
  }
}

void quantize_act(std::span<const float> x, std::span<ActBlock> out) {
  if (have_avx2()) return quantize_act_avx2(x, out);
  quantize_act_scalar(x, out);
}

void quantize_act_residual(std::span<const float> x, std::span<const ActBlock> first,
                           std::span<ActBlock> out) {
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * 32;
    float r[32];
    // fp32 residual: its own rounding (~2^-24 of |x|) is far below the second digit's step
    // (~2^-15 of the block's max).
    for (int i = 0; i < 32; ++i) r[i] = xb[i] - first[b].d * static_cast<float>(first[b].qs[i]);
    quantize_act({r, 32}, out.subspan(b, 1));
  }
}

}  // namespace tessera::ops::cpu::detail
