// Private argument checks shared by the ops implementations (ref, cpu, dispatch). Every op
// validates its tensors the same way before touching memory, so a bad call fails with a
// tessera::Error naming the op instead of reading out of bounds. Two kinds: shape checks
// (check_*), which read only shapes and dtypes and so run for every device in the dispatcher; and
// value checks (*_values), which read index arrays and so run in the host implementations (ref,
// cpu, the guarded device); CUDA's index values are validated on the host before upload (by the
// model's step packing). Holds no state.
#pragma once

#include <cstdint>
#include <span>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::detail {

// A defined, contiguous tensor (any device).
inline void check_dense(const char* op, const char* name, const Tensor& t) {
  if (!t.defined()) fail(ErrorCode::kInvalidArgument, op, ": ", name, " is undefined");
  if (!t.is_contiguous()) fail(ErrorCode::kInvalidArgument, op, ": ", name, " is not contiguous");
}
// Kept for the host implementations' readability: the same as check_dense.
inline void check_cpu(const char* op, const char* name, const Tensor& t) {
  check_dense(op, name, t);
}

// A contiguous F32 tensor.
inline void check_f32(const char* op, const char* name, const Tensor& t) {
  check_dense(op, name, t);
  if (t.dtype() != DType::kF32)
    fail(ErrorCode::kInvalidArgument, op, ": ", name, " must be f32, got ", t.str());
}

// The host implementations (ref, cpu) only run on memory host code may address: the CPU, or the
// guarded device inside its op (HostAccess). Throws for anything else (a CUDA tensor).
inline void require_host(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->defined() && !t->device().is_cpu() && !t->device().is_guarded())
      fail(ErrorCode::kInvalidArgument, op, ": ", t->str(), " is not host memory");
}

// An index array as host values (after require_host on its tensor): I32, contiguous, 1-D-able.
inline std::span<const int32_t> host_span(const char* op, const char* name, const Indices& idx) {
  const Tensor& t = idx.tensor();
  check_dense(op, name, t);
  if (t.dtype() != DType::kI32)
    fail(ErrorCode::kInvalidArgument, op, ": ", name, " must be i32, got ", t.str());
  require_host(op, {&t});
  return {t.data_as<const int32_t>(), static_cast<size_t>(t.numel())};
}
inline void check_index(const char* op, const char* name, const Indices& idx) {
  check_dense(op, name, idx.tensor());
  if (idx.tensor().dtype() != DType::kI32)
    fail(ErrorCode::kInvalidArgument, op, ": ", name, " must be i32, got ", idx.tensor().str());
}

// The host view of an AttentionBatch.
struct HostBatch {
  std::span<const int32_t> query_start, context_lens, block_tables;
  int max_blocks_per_seq = 0;
};
inline HostBatch host_batch(const char* op, const AttentionBatch& b) {
  return {host_span(op, "query_start", b.query_start),
          host_span(op, "context_lens", b.context_lens),
          host_span(op, "block_tables", b.block_tables), b.max_blocks_per_seq};
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

// Validates q/out [tokens, heads*hd], the caches [blocks, block_size, kv_heads, hd] and the batch
// array sizes; returns the number of sequences.
int64_t check_attention(const char* op, const Tensor& q, const Tensor& k_cache,
                        const Tensor& v_cache, const AttentionBatch& batch,
                        const AttentionParams& p, const Tensor& out);
// The batch's values: query_start runs from 0 to the query rows, every block-table entry a query
// can reach is a block of the cache.
void check_attention_values(const char* op, const Tensor& q, const Tensor& k_cache,
                            const HostBatch& batch, const AttentionParams& p);

// Validates kv_append shapes; returns the number of floats in one cache slot (kv_heads*hd).
int64_t check_kv_append(const char* op, const Tensor& k, const Tensor& v, const Indices& slots,
                        const Tensor& k_cache, const Tensor& v_cache);
// Every slot inside the cache.
void check_slot_values(const char* op, std::span<const int32_t> slots, const Tensor& k_cache);

// Validates rope arguments; returns the effective rotary dimension.
int check_rope(const char* op, const Tensor& x, int num_heads, const Indices& positions,
               const RopeParams& p);

// Embedding shapes (any device): returns the row width.
inline int64_t check_embedding(const char* op, const Tensor& table, const Indices& ids,
                               const Tensor& out) {
  check_dense(op, "table", table);
  check_f32(op, "out", out);
  check_index(op, "ids", ids);
  if (table.ndim() != 2)
    fail(ErrorCode::kInvalidArgument, op, ": table ", table.str(), " is not 2-D");
  const int64_t d = table.dim(1);
  if (cols_of(out) != d || rows_of(out) != ids.size())
    fail(ErrorCode::kInvalidArgument, op, ": out ", out.str(), " should be [", ids.size(), ", ", d,
         "]");
  return d;
}
// Every id a row of the table.
inline void check_id_values(const char* op, std::span<const int32_t> ids, int64_t rows) {
  for (int32_t id : ids)
    if (id < 0 || id >= rows)
      fail(ErrorCode::kOutOfRange, op, ": id ", id, " outside [0, ", rows, ")");
}

// gather_rows shapes: src [n, cols] F32, out [rows.size(), cols] F32.
inline void check_gather_rows(const char* op, const Tensor& src, const Indices& rows,
                              const Tensor& out) {
  check_f32(op, "src", src);
  check_f32(op, "out", out);
  check_index(op, "rows", rows);
  if (cols_of(out) != cols_of(src) || rows_of(out) != rows.size())
    fail(ErrorCode::kInvalidArgument, op, ": out ", out.str(), " should be [", rows.size(), ", ",
         cols_of(src), "]");
}

}  // namespace tessera::ops::detail
