// Private to kernels/ (and tests/ops/cuda_decode_test.cpp): per-element dequantization of every
// stored weight format, by the same formulas and roundings as ops::ref::dequantize_row
// (ref_dequant.cpp, ref_dequant_k.cpp), and the int8 GEMV's block unpacking. Products and sums go
// through mul_rn / add_rn / sub_rn (__fmul_rn & co. on the device) so nvcc cannot contract them
// into FMAs: the reference rounds each one, and embeddings are compared bit for bit. Every
// function is __host__ __device__ so that the CPU test runs this very code where no GPU is. `row`
// may point to global or shared memory; block fields are read byte by byte, so no alignment is
// assumed beyond the plain types' element size. Pure device functions; no state.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "tessera/kernels/weight_ops.h"

namespace tessera::kernels::detail {

constexpr int kQK = 32;     // elements per block of the 32-element formats
constexpr int kQK_K = 256;  // elements per K-quant super-block

// Bytes per block and elements per block of each format (plain types: one element a "block").
__host__ __device__ constexpr int block_bytes(WeightType t) {
  switch (t) {
    case WeightType::kF32:
      return 4;
    case WeightType::kF16:
      return 2;
    case WeightType::kBF16:
      return 2;
    case WeightType::kQ8_0:
      return 34;
    case WeightType::kQ4_0:
      return 18;
    case WeightType::kQ4_1:
      return 20;
    case WeightType::kQ5_0:
      return 22;
    case WeightType::kQ5_1:
      return 24;
    case WeightType::kQ2_K:
      return 84;
    case WeightType::kQ3_K:
      return 110;
    case WeightType::kQ4_K:
      return 144;
    case WeightType::kQ5_K:
      return 176;
    case WeightType::kQ6_K:
      return 210;
  }
  return 1;
}
__host__ __device__ constexpr int block_elems(WeightType t) {
  switch (t) {
    case WeightType::kF32:
    case WeightType::kF16:
    case WeightType::kBF16:
      return 1;
    case WeightType::kQ2_K:
    case WeightType::kQ3_K:
    case WeightType::kQ4_K:
    case WeightType::kQ5_K:
    case WeightType::kQ6_K:
      return kQK_K;
    default:
      return kQK;
  }
}

// One rounding each (the host build compiles with -ffp-contract=off: ISO C++).
__host__ __device__ inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ inline float bits_as_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}
__host__ __device__ inline float half_bits_to_float(unsigned short bits) {
  return __half2float(__ushort_as_half(bits));
}

// Byte loads: a block's fields are only as aligned as the tensor's offset in its buffer.
__host__ __device__ inline float half_at(const uint8_t* p) {
  return half_bits_to_float(static_cast<unsigned short>(p[0] | (p[1] << 8)));
}

__host__ __device__ inline uint32_t u32_at(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

__host__ __device__ inline float dl_q_minus_ml(float dl, int q, float ml) {
  return sub_rn(mul_rn(dl, static_cast<float>(q)), ml);
}

// Element e (0..255) of one K-quant super-block (layouts: ref_dequant_k.cpp, kquant_layout.h).
__host__ __device__ inline float kquant_at(const uint8_t* blk, WeightType type, int e) {
  const int h = e / 128, j = (e % 128) / 32, l = e % 32;
  switch (type) {
    case WeightType::kQ2_K: {  // scales[16], qs[64], d, dmin
      const int sm = blk[8 * h + 2 * j + l / 16];
      const float dl = mul_rn(half_at(blk + 80), static_cast<float>(sm & 0x0f));
      const float ml = mul_rn(half_at(blk + 82), static_cast<float>(sm >> 4));
      return dl_q_minus_ml(dl, (blk[16 + 32 * h + l] >> (2 * j)) & 3, ml);
    }
    case WeightType::kQ3_K: {  // hmask[32], qs[64], scales[12], d
      const uint8_t* s = blk + 96;
      const int i = e / 16;
      const int sc =
          (((s[i % 8] >> (4 * (i / 8))) & 0x0f) | (((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4)) -
          32;
      const float dl = mul_rn(half_at(blk + 108), static_cast<float>(sc));
      const int lo = (blk[32 + 32 * h + l] >> (2 * j)) & 3;
      const int high_clear = ((blk[l] >> (e / 32)) & 1) ^ 1;
      return mul_rn(dl, static_cast<float>(lo - 4 * high_clear));
    }
    case WeightType::kQ4_K:    // d, dmin, scales[12], qs[128]
    case WeightType::kQ5_K: {  // d, dmin, scales[12], qh[32], qs[128]
      const uint8_t* s = blk + 4;
      const int sb = e / 32;
      int sc, m;
      if (sb < 4) {
        sc = s[sb] & 63;
        m = s[sb + 4] & 63;
      } else {
        sc = (s[sb + 4] & 0x0f) | ((s[sb - 4] >> 6) << 4);
        m = (s[sb + 4] >> 4) | ((s[sb] >> 6) << 4);
      }
      const float dl = mul_rn(half_at(blk), static_cast<float>(sc));
      const float ml = mul_rn(half_at(blk + 2), static_cast<float>(m));
      const bool five = type == WeightType::kQ5_K;
      const uint8_t* qs = blk + (five ? 48 : 16);
      int q = (qs[32 * (sb / 2) + l] >> (4 * (sb % 2))) & 0x0f;
      if (five) q |= ((blk[16 + l] >> sb) & 1) << 4;
      return dl_q_minus_ml(dl, q, ml);
    }
    case WeightType::kQ6_K: {  // ql[128], qh[64], scales[16] (int8), d
      const int lo = (blk[64 * h + l + 32 * (j % 2)] >> (4 * (j / 2))) & 0x0f;
      const int hi = (blk[128 + 32 * h + l] >> (2 * j)) & 3;
      const float dl =
          mul_rn(half_at(blk + 208), static_cast<float>(static_cast<int8_t>(blk[192 + e / 16])));
      return mul_rn(dl, static_cast<float>((lo | (hi << 4)) - 32));
    }
    default:
      return 0.f;
  }
}

// Element k of a weight row, as ops::ref::dequantize_row computes it. For the plain types `row`
// must be aligned to the element size (rows of a tensor are; the stage buffers are).
__host__ __device__ inline float weight_at(const uint8_t* row, WeightType type, int64_t k) {
  switch (type) {
    case WeightType::kF32:
      return reinterpret_cast<const float*>(row)[k];
    case WeightType::kF16:
      return half_bits_to_float(reinterpret_cast<const unsigned short*>(row)[k]);
    case WeightType::kBF16:
      return bits_as_float(static_cast<uint32_t>(reinterpret_cast<const unsigned short*>(row)[k])
                           << 16);
    case WeightType::kQ2_K:
    case WeightType::kQ3_K:
    case WeightType::kQ4_K:
    case WeightType::kQ5_K:
    case WeightType::kQ6_K:
      return kquant_at(row + (k / kQK_K) * block_bytes(type), type, static_cast<int>(k % kQK_K));
    default:
      break;
  }
  const int64_t b = k / kQK;
  const int j = static_cast<int>(k % kQK);
  const int lo = j & 15;
  const bool high = j >= 16;
  const uint8_t* blk = row + b * block_bytes(type);
  switch (type) {
    case WeightType::kQ8_0:  // d, qs[32]
      return mul_rn(static_cast<float>(static_cast<int8_t>(blk[2 + j])), half_at(blk));
    case WeightType::kQ4_0: {  // d, qs[16]
      const int q = (high ? blk[2 + lo] >> 4 : blk[2 + lo] & 0x0f) - 8;
      return mul_rn(static_cast<float>(q), half_at(blk));
    }
    case WeightType::kQ4_1: {  // d, m, qs[16]
      const int q = high ? blk[4 + lo] >> 4 : blk[4 + lo] & 0x0f;
      return add_rn(mul_rn(static_cast<float>(q), half_at(blk)), half_at(blk + 2));
    }
    case WeightType::kQ5_0: {  // d, qh[4], qs[16]
      const uint32_t qh = u32_at(blk + 2);
      const int q = ((high ? blk[6 + lo] >> 4 : blk[6 + lo] & 0x0f) |
                     static_cast<int>(((qh >> j) & 1u) << 4)) -
                    16;
      return mul_rn(static_cast<float>(q), half_at(blk));
    }
    case WeightType::kQ5_1: {  // d, m, qh[4], qs[16]
      const uint32_t qh = u32_at(blk + 4);
      const int q =
          (high ? blk[8 + lo] >> 4 : blk[8 + lo] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      return add_rn(mul_rn(static_cast<float>(q), half_at(blk)), half_at(blk + 2));
    }
    default:
      return 0.f;
  }
}

// ---- The int8 GEMV's view of a 32-element block (gemv.cu) ----

// Four bits b0..b3 of `bits` to bit 4 of bytes 0..3 (the fifth bit of four Q5 quants).
__host__ __device__ inline uint32_t fifth_bits(uint32_t bits) {
  return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

// A block's 32 quants as eight words of four bytes (elements 4i..4i+3 in word i), its scale d and
// its min (Q4_1/Q5_1; zero otherwise). Unsigned nibbles stay 0..15 (0..31 with the fifth bit):
// as signed bytes they are the same values, so __dp4a's signed form serves every format.
template <WeightType T>
__host__ __device__ void unpack_block(const uint8_t* blk, int* q, float* d, float* mn) {
  *d = half_at(blk);
  *mn = 0.f;
  if constexpr (T == WeightType::kQ8_0) {
    for (int i = 0; i < 8; ++i) q[i] = static_cast<int>(u32_at(blk + 2 + 4 * i));
  } else {
    constexpr bool kMin = T == WeightType::kQ4_1 || T == WeightType::kQ5_1;
    constexpr bool kFive = T == WeightType::kQ5_0 || T == WeightType::kQ5_1;
    if constexpr (kMin) *mn = half_at(blk + 2);
    const int qh_off = kMin ? 4 : 2;
    const uint32_t qh = kFive ? u32_at(blk + qh_off) : 0u;
    const uint8_t* qs = blk + qh_off + (kFive ? 4 : 0);
    for (int i = 0; i < 4; ++i) {
      const uint32_t v = u32_at(qs + 4 * i);
      uint32_t lo = v & 0x0f0f0f0fu, hi = (v >> 4) & 0x0f0f0f0fu;
      if constexpr (kFive) {
        lo |= fifth_bits(qh >> (4 * i));
        hi |= fifth_bits(qh >> (16 + 4 * i));
      }
      q[i] = static_cast<int>(lo);
      q[4 + i] = static_cast<int>(hi);
    }
  }
}

// One block's contribution to one output: sumi = sum(q_w q_x), sumq = sum(q_x).
template <WeightType T>
__host__ __device__ float block_dot(int sumi, int sumq, float d, float mn, float dx) {
  if constexpr (T == WeightType::kQ8_0) return d * dx * static_cast<float>(sumi);
  if constexpr (T == WeightType::kQ4_0) return d * dx * static_cast<float>(sumi - 8 * sumq);
  if constexpr (T == WeightType::kQ5_0) return d * dx * static_cast<float>(sumi - 16 * sumq);
  return d * dx * static_cast<float>(sumi) + mn * dx * static_cast<float>(sumq);
}

// An activation block's int8 scale d = max|x| / 127 and a value's quant round(x / d), |q| <= 127
// (launch_quantize_q8; zero blocks quantize to zeros).
__host__ __device__ inline float q8_scale(float amax) { return amax / 127.f; }
__host__ __device__ inline int q8_quant(float v, float d) {
  if (!(d > 0.f)) return 0;
  const int q = static_cast<int>(rintf(v / d));
  return q < -127 ? -127 : (q > 127 ? 127 : q);
}

// __dp4a (four int8 products summed into c); the host version for the CPU test.
__host__ __device__ inline int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; ++i)
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * i)) *
         static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * i));
  return c;
#endif
}

}  // namespace tessera::kernels::detail
