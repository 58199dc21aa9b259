// Private argument checks shared by the ops implementations (ref, cpu, dispatch). Every op
// validates its tensors the same way before touching memory, so a bad call fails with a
// tessera::Error naming the op instead of reading out of bounds. Holds no state.
#pragma once

#include <cstdint>
#include <span>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::detail {

// A defined, contiguous tensor on the CPU.
inline void check_cpu(const char* op, const char* name, const Tensor& t) {
  if (!t.defined()) fail(ErrorCode::kInvalidArgument, op, ": ", name, " is undefined");
  if (!t.device().is_cpu())
    fail(ErrorCode::kInvalidArgument, op, ": ", name, " is on ", t.device().str(), ", not the CPU");
  if (!t.is_contiguous()) fail(ErrorCode::kInvalidArgument, op, ": ", name, " is not contiguous");
}

// A CPU, contiguous F32 tensor.
inline void check_f32(const char* op, const char* name, const Tensor& t) {
  check_cpu(op, name, t);
  if (t.dtype() != DType::kF32)
    fail(ErrorCode::kInvalidArgument, op, ": ", name, " must be f32, got ", t.str());
}

// Columns (last dim) of a tensor viewed as rows x cols; 1 for a scalar.
inline int64_t cols_of(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
inline int64_t rows_of(const Tensor& t) {
  const int64_t c = cols_of(t);
  return c == 0 ? 0 : t.numel() / c;
}

// Validated shapes of y[M,N] = x[M,K] * w[N,K]^T + bias[N].
struct MatmulShape {
  int64_t m = 0, n = 0, k = 0;
};
MatmulShape check_matmul(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias,
                         const Tensor& y);

// Validates q/out [tokens, heads*hd], the caches [blocks, block_size, kv_heads, hd], the batch
// spans and every block-table entry a query can reach; returns the number of sequences.
int64_t check_attention(const char* op, const Tensor& q, const Tensor& k_cache,
                        const Tensor& v_cache, const AttentionBatch& batch,
                        const AttentionParams& p, const Tensor& out);

// Validates kv_append arguments; returns the number of floats in one cache slot (kv_heads*hd).
int64_t check_kv_append(const char* op, const Tensor& k, const Tensor& v,
                        std::span<const int32_t> slots, const Tensor& k_cache,
                        const Tensor& v_cache);

// Validates rope arguments; returns the effective rotary dimension.
int check_rope(const char* op, const Tensor& x, int num_heads, std::span<const int32_t> positions,
               const RopeParams& p);

// Shared argument checks of embedding (ref and cpu): returns the row width.
inline int64_t check_embedding(const Tensor& table, std::span<const int32_t> ids, const Tensor& out) {
  check_cpu("embedding", "table", table);
  check_f32("embedding", "out", out);
  if (table.ndim() != 2)
    fail(ErrorCode::kInvalidArgument, "embedding: table ", table.str(), " is not 2-D");
  const int64_t d = table.dim(1);
  if (cols_of(out) != d || rows_of(out) != static_cast<int64_t>(ids.size()))
    fail(ErrorCode::kInvalidArgument, "embedding: out ", out.str(), " should be [", ids.size(),
         ", ", d, "]");
  for (int32_t id : ids)
    if (id < 0 || id >= table.dim(0))
      fail(ErrorCode::kOutOfRange, "embedding: id ", id, " outside [0, ", table.dim(0), ")");
  return d;
}

}  // namespace tessera::ops::detail
