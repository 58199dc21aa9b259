// The decode GEMV (matmul.h) and the int8 activation quantizer it reads. A warp owns one output
// column n: it copies a chunk of its weight row into its own shared-memory stage (coalesced, 128
// bits per lane per load when aligned; every weight byte is read from memory once per call), then
// dequantizes from the stage in registers and multiplies with up to kGemvMaxRows rows of x.
//  - 32-element block formats: lane l takes block l of the chunk, unpacks its 32 quants into
//    eight packed int32 words and dots them with the int8 activations by __dp4a; the block's
//    scales enter once per block (d_w * d_x * sum(q_w q_x), offsets/mins via sum(q_x)).
//  - plain and K-quant formats: lane l takes elements l, l+32, ... of the chunk (so the x reads
//    are coalesced) and accumulates x * w in fp32.
// No block-level synchronisation: warps are independent, so a warp past the last column returns.
#include <algorithm>
#include <climits>

#include "decode.cuh"
#include "prologue.cuh"
#include "tessera/kernels/matmul.h"

namespace tessera::kernels {
namespace {

using detail::block_bytes;
using detail::block_elems;

// Elements of a row staged per chunk, per format: 1 KiB for the plain types, 32 blocks for the
// 32-element formats (one per lane), 8 super-blocks for the K-quants. Every chunk's byte size is
// a multiple of 16, so each chunk of a 16-byte-aligned row starts 16-byte aligned.
template <WeightType T>
__host__ __device__ constexpr int chunk_elems() {
  if constexpr (T == WeightType::kF32) return 256;
  if constexpr (T == WeightType::kF16 || T == WeightType::kBF16) return 512;
  if constexpr (block_elems(T) == detail::kQK) return 32 * detail::kQK;
  return 8 * detail::kQK_K;
}
template <WeightType T>
__host__ __device__ constexpr int chunk_bytes() {
  return chunk_elems<T>() / block_elems(T) * block_bytes(T);
}
constexpr int kStageBytes = 8 * 210;  // the largest chunk: 8 Q6_K super-blocks

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The warp copies `bytes` from src (global) to dst (its stage); 128-bit loads when kVec (src
// 16-byte aligned), bytes for the rest. Ends with __syncwarp so every lane sees the whole chunk.
template <bool kVec>
__device__ void stage_chunk(uint8_t* dst, const uint8_t* src, int bytes, int lane) {
  int done = 0;
  if constexpr (kVec) {
    const int n16 = bytes / 16;
    const auto* s16 = reinterpret_cast<const uint4*>(src);
    auto* d16 = reinterpret_cast<uint4*>(dst);
    for (int i = lane; i < n16; i += 32) d16[i] = __ldg(s16 + i);
    done = n16 * 16;
  }
  for (int i = done + lane; i < bytes; i += 32) dst[i] = src[i];
  __syncwarp();
}

__device__ void store_column(const GemvArgs& a, int n, const float* acc, int lane) {
  const float b = a.bias ? a.bias[n] : 0.f;
#pragma unroll
  for (int m = 0; m < kGemvMaxRows; ++m) {
    if (m >= a.M) break;
    const float s = warp_sum(acc[m]);
    if (lane == 0) {
      float& y = a.y[static_cast<int64_t>(m) * a.N + n];
      y = a.accumulate ? y + (s + b) : s + b;
    }
  }
}

template <WeightType T, bool kVec>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_f32_kernel(GemvArgs a) {
  __shared__ __align__(16) uint8_t stages[kGemvWarps][kStageBytes];
  static_assert(chunk_bytes<T>() % 16 == 0 && chunk_bytes<T>() <= kStageBytes);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = blockIdx.x * kGemvWarps + warp;
  if (n >= a.N) return;
  uint8_t* stage = stages[warp];
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + static_cast<int64_t>(n) * a.row_bytes;
  constexpr int kCE = chunk_elems<T>(), kBE = block_elems(T), kBB = block_bytes(T);
  float acc[kGemvMaxRows] = {};
  for (int64_t k0 = 0; k0 < a.K; k0 += kCE) {
    const int ne = static_cast<int>(a.K - k0 < kCE ? a.K - k0 : kCE);
    stage_chunk<kVec>(stage, row + k0 / kBE * kBB, ne / kBE * kBB, lane);
    for (int e = lane; e < ne; e += 32) {
      const float wv = detail::weight_at(stage, T, e);
      const float* xk = a.x + k0 + e;
#pragma unroll
      for (int m = 0; m < kGemvMaxRows; ++m)
        if (m < a.M) acc[m] = fmaf(xk[static_cast<int64_t>(m) * a.K], wv, acc[m]);
    }
    __syncwarp();  // the next chunk overwrites the stage
  }
  store_column(a, n, acc, lane);
}

template <WeightType T, bool kVec>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_int8_kernel(GemvArgs a) {
  __shared__ __align__(16) uint8_t stages[kGemvWarps][kStageBytes];
  static_assert(chunk_bytes<T>() % 16 == 0 && chunk_bytes<T>() <= kStageBytes);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = blockIdx.x * kGemvWarps + warp;
  if (n >= a.N) return;
  uint8_t* stage = stages[warp];
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + static_cast<int64_t>(n) * a.row_bytes;
  constexpr int kBB = block_bytes(T);
  const int64_t nb = a.K / detail::kQK;
  float acc[kGemvMaxRows] = {};
  for (int64_t b0 = 0; b0 < nb; b0 += 32) {
    const int cb = static_cast<int>(nb - b0 < 32 ? nb - b0 : 32);
    stage_chunk<kVec>(stage, row + b0 * kBB, cb * kBB, lane);
    if (lane < cb) {
      int q[8];
      float d, mn;
      detail::unpack_block<T>(stage + lane * kBB, q, &d, &mn);
      const int64_t b = b0 + lane;
#pragma unroll
      for (int m = 0; m < kGemvMaxRows; ++m) {
        if (m >= a.M) break;
        const auto* xq = reinterpret_cast<const int4*>(a.xq + m * a.K + b * detail::kQK);
        const int4 v0 = xq[0], v1 = xq[1];
        int s = detail::dp4a(q[0], v0.x, 0);
        s = detail::dp4a(q[1], v0.y, s);
        s = detail::dp4a(q[2], v0.z, s);
        s = detail::dp4a(q[3], v0.w, s);
        s = detail::dp4a(q[4], v1.x, s);
        s = detail::dp4a(q[5], v1.y, s);
        s = detail::dp4a(q[6], v1.z, s);
        s = detail::dp4a(q[7], v1.w, s);
        const float2 ds = a.xds[m * nb + b];
        acc[m] += detail::block_dot<T>(s, __float2int_rn(ds.y), d, mn, ds.x);
      }
    }
    __syncwarp();
  }
  store_column(a, n, acc, lane);
}

// One warp per block of 32: d = max|x| / 127, q = round(x / d) (|q| <= 127), sum of q exact.
// A warp's 32 values v (lane = element of block i, at = its index in qs) as one int8 block.
__device__ void store_q8(int8_t* qs, float2* ds, float v, int64_t at, int64_t i, int lane) {
  float amax = fabsf(v);
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = detail::q8_scale(amax);
  const int q = detail::q8_quant(v, d);
  int sum = q;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  qs[at] = static_cast<int8_t>(q);
  if (lane == 0) ds[i] = make_float2(d, static_cast<float>(sum));
}

// One warp per block of 32 of the M x K values load(at) (at = row * K + column).
template <typename Load>
__global__ void quantize_q8_kernel(int8_t* qs, float2* ds, Load load, int M, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t nb = K / detail::kQK, total = static_cast<int64_t>(M) * nb;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < total;
       i += warps) {
    const int64_t at = (i / nb) * K + (i % nb) * detail::kQK + lane;
    store_q8(qs, ds, load(at), at, i, lane);
  }
}

struct LoadX {
  const float* x;
  __device__ float operator()(int64_t at) const { return x[at]; }
};
struct LoadSiluMul {  // launch_silu_mul's arithmetic (prologue.cuh), so the same bits
  const float* gate;
  const float* up;
  __device__ float operator()(int64_t at) const { return detail::silu_times(gate[at], up[at]); }
};

constexpr int kNormThreads = 256;  // launch_rms_norm's block: the same reduction, the same bits

// grid (M, S) of kNormThreads: each CTA takes its row's inverse RMS as rms_norm_kernel does
// (prologue.cuh, the same code and block size), then its warps quantize the normed row's blocks y*8 + warp, + 8 S, ...
// (every CTA of a row recomputes the sum from L2: cheaper than a second launch at decode sizes).
__global__ void rms_norm_quantize_q8_kernel(int8_t* qs, float2* ds, const float* x, const float* w,
                                            int cols, float eps) {
  const int64_t m = blockIdx.x;
  const float* xr = x + m * cols;
  const float inv = detail::row_inv_rms(xr, cols, eps);
  const int lane = threadIdx.x & 31, warps = blockDim.x / 32;
  const int64_t nb = cols / detail::kQK;
  for (int64_t b = static_cast<int64_t>(blockIdx.y) * warps + threadIdx.x / 32; b < nb;
       b += static_cast<int64_t>(gridDim.y) * warps) {
    const int64_t c = b * detail::kQK + lane;
    store_q8(qs, ds, xr[c] * inv * w[c], m * cols + c, m * nb + b, lane);
  }
}

bool q8_shape_ok(int8_t* qs, int M, int64_t K) {
  return M >= 0 && K % detail::kQK == 0 && reinterpret_cast<uintptr_t>(qs) % 16 == 0;
}

template <typename Load>
cudaError_t launch_q8(int8_t* qs, float2* ds, Load load, int M, int64_t K, cudaStream_t stream) {
  if (!q8_shape_ok(qs, M, K)) return cudaErrorInvalidValue;
  const int64_t blocks = static_cast<int64_t>(M) * (K / detail::kQK);
  if (blocks == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t ctas = std::min<int64_t>((blocks + 7) / 8, 65535);
  quantize_q8_kernel<<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(qs, ds, load, M, K);
  return cudaGetLastError();
}

template <WeightType T>
cudaError_t launch_typed(const GemvArgs& a, cudaStream_t stream) {
  const dim3 grid((a.N + kGemvWarps - 1) / kGemvWarps);
  constexpr bool kInt8 = block_elems(T) == detail::kQK;
  if constexpr (kInt8) {
    if (a.vector_loads)
      gemv_int8_kernel<T, true><<<grid, kGemvWarps * 32, 0, stream>>>(a);
    else
      gemv_int8_kernel<T, false><<<grid, kGemvWarps * 32, 0, stream>>>(a);
  } else {
    if (a.vector_loads)
      gemv_f32_kernel<T, true><<<grid, kGemvWarps * 32, 0, stream>>>(a);
    else
      gemv_f32_kernel<T, false><<<grid, kGemvWarps * 32, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace

bool gemv_uses_int8(WeightType type) { return block_elems(type) == detail::kQK; }

cudaError_t launch_quantize_q8(int8_t* qs, float2* ds, const float* x, int M, int64_t K,
                               cudaStream_t stream) {
  return launch_q8(qs, ds, LoadX{x}, M, K, stream);
}

cudaError_t launch_silu_mul_quantize_q8(int8_t* qs, float2* ds, const float* gate, const float* up,
                                        int M, int64_t K, cudaStream_t stream) {
  return launch_q8(qs, ds, LoadSiluMul{gate, up}, M, K, stream);
}

cudaError_t launch_rms_norm_quantize_q8(int8_t* qs, float2* ds, const float* x,
                                        const float* weight, float eps, int M, int64_t K,
                                        cudaStream_t stream) {
  if (!q8_shape_ok(qs, M, K) || K > INT32_MAX) return cudaErrorInvalidValue;
  if (M == 0 || K == 0) return cudaSuccess;
  if (M > 65535) return cudaErrorInvalidValue;
  const int64_t nb = K / detail::kQK, per_cta = kNormThreads / 32;
  const auto split = static_cast<unsigned>(std::min<int64_t>((nb + per_cta - 1) / per_cta, 16));
  rms_norm_quantize_q8_kernel<<<dim3(static_cast<unsigned>(M), split), kNormThreads, 0, stream>>>(
      qs, ds, x, weight, static_cast<int>(K), eps);
  return cudaGetLastError();
}

cudaError_t launch_gemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.N == 0) return cudaSuccess;
  const int be = block_elems(a.type);
  if (a.M < 0 || a.M > kGemvMaxRows || a.N < 0 || a.K < 0 || a.K % be != 0 ||
      a.row_bytes != static_cast<size_t>(a.K / be) * static_cast<size_t>(block_bytes(a.type)))
    return cudaErrorInvalidValue;
  if (a.vector_loads && (reinterpret_cast<uintptr_t>(a.w) % 16 != 0 || a.row_bytes % 16 != 0))
    return cudaErrorInvalidValue;
  if (gemv_uses_int8(a.type) && (!a.xq || !a.xds || reinterpret_cast<uintptr_t>(a.xq) % 16 != 0))
    return cudaErrorInvalidValue;
  switch (a.type) {
    case WeightType::kF32:
      return launch_typed<WeightType::kF32>(a, stream);
    case WeightType::kF16:
      return launch_typed<WeightType::kF16>(a, stream);
    case WeightType::kBF16:
      return launch_typed<WeightType::kBF16>(a, stream);
    case WeightType::kQ8_0:
      return launch_typed<WeightType::kQ8_0>(a, stream);
    case WeightType::kQ4_0:
      return launch_typed<WeightType::kQ4_0>(a, stream);
    case WeightType::kQ4_1:
      return launch_typed<WeightType::kQ4_1>(a, stream);
    case WeightType::kQ5_0:
      return launch_typed<WeightType::kQ5_0>(a, stream);
    case WeightType::kQ5_1:
      return launch_typed<WeightType::kQ5_1>(a, stream);
    case WeightType::kQ2_K:
      return launch_typed<WeightType::kQ2_K>(a, stream);
    case WeightType::kQ3_K:
      return launch_typed<WeightType::kQ3_K>(a, stream);
    case WeightType::kQ4_K:
      return launch_typed<WeightType::kQ4_K>(a, stream);
    case WeightType::kQ5_K:
      return launch_typed<WeightType::kQ5_K>(a, stream);
    case WeightType::kQ6_K:
      return launch_typed<WeightType::kQ6_K>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace tessera::kernels
