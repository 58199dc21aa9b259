// Weight-reading ops and the remaining row ops (see weight_ops.h). Correct first: the per-element
// decode below matches ops::ref::dequantize_row exactly (products and sums rounded as the
// reference does them, no contraction into FMAs), so embeddings are bit-exact; the matmul is a
// warp-per-column GEMV, to be replaced by tuned GEMV/cuBLAS paths measured against it.
#include <cuda_fp16.h>

#include "tessera/kernels/weight_ops.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535;
constexpr int kQK = 32;   // elements per quantized block
constexpr int kTileM = 8; // rows of x per pass over a weight row

__device__ float half_at(const uint8_t* p) {
  const unsigned short bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(bits));
}

__device__ uint32_t u32_at(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Element k of a weight row, as ops::ref::dequantize_row computes it.
__device__ float weight_at(const uint8_t* row, WeightType type, int64_t k) {
  switch (type) {
    case WeightType::kF32:
      return reinterpret_cast<const float*>(row)[k];
    case WeightType::kF16:
      return __half2float(__ushort_as_half(reinterpret_cast<const unsigned short*>(row)[k]));
    case WeightType::kBF16:
      return __uint_as_float(static_cast<unsigned>(reinterpret_cast<const unsigned short*>(row)[k])
                             << 16);
    default:
      break;
  }
  const int64_t b = k / kQK;
  const int j = static_cast<int>(k % kQK);
  const int lo = j & 15;
  const bool high = j >= 16;
  switch (type) {
    case WeightType::kQ8_0: {  // d, qs[32]
      const uint8_t* blk = row + b * 34;
      return __fmul_rn(static_cast<float>(static_cast<int8_t>(blk[2 + j])), half_at(blk));
    }
    case WeightType::kQ4_0: {  // d, qs[16]
      const uint8_t* blk = row + b * 18;
      const int q = (high ? blk[2 + lo] >> 4 : blk[2 + lo] & 0x0f) - 8;
      return __fmul_rn(static_cast<float>(q), half_at(blk));
    }
    case WeightType::kQ4_1: {  // d, m, qs[16]
      const uint8_t* blk = row + b * 20;
      const int q = high ? blk[4 + lo] >> 4 : blk[4 + lo] & 0x0f;
      return __fadd_rn(__fmul_rn(static_cast<float>(q), half_at(blk)), half_at(blk + 2));
    }
    case WeightType::kQ5_0: {  // d, qh[4], qs[16]
      const uint8_t* blk = row + b * 22;
      const uint32_t qh = u32_at(blk + 2);
      const int q = ((high ? blk[6 + lo] >> 4 : blk[6 + lo] & 0x0f) |
                     static_cast<int>(((qh >> j) & 1u) << 4)) - 16;
      return __fmul_rn(static_cast<float>(q), half_at(blk));
    }
    case WeightType::kQ5_1: {  // d, m, qh[4], qs[16]
      const uint8_t* blk = row + b * 24;
      const uint32_t qh = u32_at(blk + 4);
      const int q = (high ? blk[8 + lo] >> 4 : blk[8 + lo] & 0x0f) |
                    static_cast<int>(((qh >> j) & 1u) << 4);
      return __fadd_rn(__fmul_rn(static_cast<float>(q), half_at(blk)), half_at(blk + 2));
    }
    default:
      return 0.f;
  }
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void embedding_rows_kernel(float* out, const uint8_t* table, WeightType type,
                                      size_t row_bytes, const int32_t* ids, int num_ids,
                                      int64_t dim, int64_t first_id, int64_t table_rows,
                                      bool masked) {
  for (int t = blockIdx.x; t < num_ids; t += gridDim.x) {
    const int64_t r = static_cast<int64_t>(ids[t]) - first_id;
    float* o = out + static_cast<int64_t>(t) * dim;
    const bool inside = r >= 0 && r < table_rows;
    const uint8_t* row = table + (inside ? r : 0) * static_cast<int64_t>(row_bytes);
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
      o[c] = (masked && !inside) ? 0.f : weight_at(row, type, c);
  }
}

// One warp per output column n; lane l takes elements k = l, l+32, ... (for block formats: the
// same position in every block), tiles of kTileM rows of x share each decoded weight.
__global__ void matmul_kernel(float* y, const float* x, const uint8_t* w, WeightType type,
                              size_t row_bytes, const float* bias, int M, int N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int warps = blockDim.x / 32;
  for (int n = blockIdx.x * warps + threadIdx.x / 32; n < N; n += gridDim.x * warps) {
    const uint8_t* row = w + static_cast<int64_t>(n) * static_cast<int64_t>(row_bytes);
    const float b = bias ? bias[n] : 0.f;
    for (int m0 = 0; m0 < M; m0 += kTileM) {
      const int tm = M - m0 < kTileM ? M - m0 : kTileM;
      float acc[kTileM];
      for (int i = 0; i < kTileM; ++i) acc[i] = 0.f;
      for (int64_t k = lane; k < K; k += 32) {
        const float wk = weight_at(row, type, k);
        for (int i = 0; i < tm; ++i) acc[i] += x[static_cast<int64_t>(m0 + i) * K + k] * wk;
      }
      for (int i = 0; i < tm; ++i) {
        const float s = warp_sum(acc[i]);
        if (lane == 0) y[static_cast<int64_t>(m0 + i) * N + n] = s + b;
      }
    }
  }
}

__global__ void add_kernel(float* x, const float* y, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

// One block per row: max, then sum of exp, then scale; two-level reductions in shared memory.
__device__ float block_reduce(float v, bool is_max, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    const int nw = (blockDim.x + 31) / 32;
    float u = threadIdx.x < nw ? shared[threadIdx.x] : (is_max ? -INFINITY : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, u, o);
      u = is_max ? fmaxf(u, other) : u + other;
    }
    if (threadIdx.x == 0) shared[0] = u;
  }
  __syncthreads();
  const float r = shared[0];
  __syncthreads();
  return r;
}

__global__ void softmax_kernel(float* x, int rows, int64_t cols) {
  __shared__ float shared[32];
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    float* row = x + static_cast<int64_t>(r) * cols;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, row[c]);
    mx = block_reduce(mx, true, shared);
    float sum = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float e = expf(row[c] - mx);
      row[c] = e;
      sum += e;
    }
    sum = block_reduce(sum, false, shared);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) row[c] /= sum;
  }
}

__global__ void gather_rows_kernel(float* out, const float* src, const int32_t* rows, int n,
                                   int64_t cols) {
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    const float* s = src + static_cast<int64_t>(rows[i]) * cols;
    float* o = out + static_cast<int64_t>(i) * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = s[c];
  }
}

int grid_for(long items) { return static_cast<int>(items < kMaxBlocks ? items : kMaxBlocks); }

}  // namespace

cudaError_t launch_embedding_rows(float* out, const void* table, WeightType type, size_t row_bytes,
                                  const int32_t* ids, int num_ids, int64_t dim, int64_t first_id,
                                  int64_t table_rows, bool masked, cudaStream_t stream) {
  if (num_ids == 0 || dim == 0) return cudaSuccess;
  embedding_rows_kernel<<<grid_for(num_ids), kThreads, 0, stream>>>(
      out, static_cast<const uint8_t*>(table), type, row_bytes, ids, num_ids, dim, first_id,
      table_rows, masked);
  return cudaGetLastError();
}

cudaError_t launch_matmul(float* y, const float* x, const void* w, WeightType type,
                          size_t row_bytes, const float* bias, int M, int N, int64_t K,
                          cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const int warps = kThreads / 32;
  matmul_kernel<<<grid_for((N + warps - 1) / warps), kThreads, 0, stream>>>(
      y, x, static_cast<const uint8_t*>(w), type, row_bytes, bias, M, N, K);
  return cudaGetLastError();
}

cudaError_t launch_add(float* x, const float* y, long n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  add_kernel<<<grid_for((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t launch_softmax(float* x, int rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  softmax_kernel<<<grid_for(rows), kThreads, 0, stream>>>(x, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows(float* out, const float* src, const int32_t* rows, int n,
                               int64_t cols, cudaStream_t stream) {
  if (n == 0 || cols == 0) return cudaSuccess;
  gather_rows_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, src, rows, n, cols);
  return cudaGetLastError();
}

}  // namespace tessera::kernels
