// The paged KV cache's element types on the device (model_ops.h KvType): loads widen to fp32,
// stores round to nearest even (__float2half_rn / __float2bfloat16_rn, the host's
// f32_to_fp16 / f32_to_bf16 bits). The type is a kernel argument, the same for every thread, so
// the switch costs a uniform branch, not a kernel per type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tessera/kernels/model_ops.h"

namespace tessera::kernels {

__device__ __forceinline__ float load_kv(const void* cache, int64_t i, KvType t) {
  switch (t) {
    case KvType::kF16:
      return __half2float(static_cast<const __half*>(cache)[i]);
    case KvType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(cache)[i]);
    default:
      return static_cast<const float*>(cache)[i];
  }
}

__device__ __forceinline__ void store_kv(void* cache, int64_t i, float v, KvType t) {
  switch (t) {
    case KvType::kF16:
      static_cast<__half*>(cache)[i] = __float2half_rn(v);
      return;
    case KvType::kBF16:
      static_cast<__nv_bfloat16*>(cache)[i] = __float2bfloat16_rn(v);
      return;
    default:
      static_cast<float*>(cache)[i] = v;
  }
}

}  // namespace tessera::kernels
