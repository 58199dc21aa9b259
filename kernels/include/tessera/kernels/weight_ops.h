// CUDA launchers for embedding rows of any stored weight type and the remaining row ops (residual
// add, softmax, row gather); the matmul paths are in matmul.h. Weights stay in their file format
// (f32/f16/bf16, ggml Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 blocks, Q2_K..Q6_K super-blocks) and are
// dequantized in registers by the same formulas as ops::ref::dequantize_row (kernels/decode.cuh).
// Launchers only: raw device pointers, sizes, a stream.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tessera::kernels {

enum class WeightType : int {
  kF32,
  kF16,
  kBF16,
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
};

// out[t, :] = row (ids[t] - first_id) of the [table_rows, dim] table, dequantized. With `masked`,
// ids outside [first_id, first_id + table_rows) give zero rows (the vocabulary-parallel shard);
// without, the caller guarantees every id is a row.
cudaError_t launch_embedding_rows(float* out, const void* table, WeightType type, size_t row_bytes,
                                  const int32_t* ids, int num_ids, int64_t dim, int64_t first_id,
                                  int64_t table_rows, bool masked, cudaStream_t stream);

// x[i] += y[i]
cudaError_t launch_add(float* x, const float* y, long n, cudaStream_t stream);
// Row-wise softmax of x [rows, cols] in place.
cudaError_t launch_softmax(float* x, int rows, int64_t cols, cudaStream_t stream);
// out[i, :] = src[rows[i], :] for [n, cols] F32.
cudaError_t launch_gather_rows(float* out, const float* src, const int32_t* rows, int n,
                               int64_t cols, cudaStream_t stream);

}  // namespace tessera::kernels
