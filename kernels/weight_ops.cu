// Embedding rows of every weight format and the remaining row ops (see weight_ops.h). The
// per-element decode (decode.cuh) matches ops::ref::dequantize_row exactly, so embeddings are
// bit-exact; the matmul paths are in gemv.cu and gemm_prep.cu.
#include "decode.cuh"
#include "tessera/kernels/weight_ops.h"

namespace tessera::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535;
using detail::weight_at;

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
