// KV cache element types: the paged cache holds K and V as F32, F16 or BF16 (the worker's
// kv_cache_dtype); the ops that write it (kv_append, rope_kv_append) round each value to the
// cache's type (round-to-nearest-even, as a CUDA __float2half_rn / __float2bfloat16_rn), and
// paged attention reads it back as fp32 and computes as before, so a reduced-precision cache
// changes only what is stored. The scalar converters here are the reference; the CPU's fast ones
// (cpu/kv_rows.cpp, F16C / AVX2) give the same bits. No state.
#pragma once

#include <cstdint>
#include <cstring>

#include "tessera/core/dtype.h"
#include "tessera/core/half.h"

namespace tessera::ops::detail {

inline bool is_kv_dtype(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

// dst (a cache row of type t) = src rounded to t, n values.
inline void kv_store_row(DType t, const float* src, void* dst, int64_t n) {
  if (t == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i)
    d[i] = t == DType::kF16 ? f32_to_fp16(src[i]) : f32_to_bf16(src[i]);
}

// dst = the n values of a cache row of type t, as fp32 (exact).
inline void kv_load_row(DType t, const void* src, float* dst, int64_t n) {
  if (t == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = t == DType::kF16 ? fp16_to_f32(s[i]) : bf16_to_f32(s[i]);
}

}  // namespace tessera::ops::detail
