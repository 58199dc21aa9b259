// Argument validation shared by every implementation of the ops (see check.h).
#include "check.h"

#include "kv_rows.h"

namespace tessera::ops::detail {

MatmulShape check_matmul(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias,
                         const Tensor& y) {
  check_f32(op, "x", x);
  check_f32(op, "y", y);
  check_cpu(op, "w", w);
  if (w.ndim() != 2) fail(ErrorCode::kInvalidArgument, op, ": w must be 2-D [N, K], got ", w.str());
  MatmulShape s{rows_of(x), w.dim(0), w.dim(1)};
  if (cols_of(x) != s.k)
    fail(ErrorCode::kInvalidArgument, op, ": x ", x.str(), " does not match w ", w.str());
  if (cols_of(y) != s.n || rows_of(y) != s.m)
    fail(ErrorCode::kInvalidArgument, op, ": y ", y.str(), " should be [", s.m, ", ", s.n, "]");
  if (w.dtype() == DType::kI32)
    fail(ErrorCode::kUnsupported, op, ": i32 weights are not supported");
  if (bias.defined()) {
    check_f32(op, "bias", bias);
    if (bias.numel() != s.n)
      fail(ErrorCode::kInvalidArgument, op, ": bias ", bias.str(), " should have ", s.n, " values");
  }
  return s;
}

namespace {
// The paged caches: contiguous, F32 / F16 / BF16 (kv_rows.h), both of one type.
void check_kv_caches(const char* op, const Tensor& k_cache, const Tensor& v_cache) {
  check_dense(op, "k_cache", k_cache);
  check_dense(op, "v_cache", v_cache);
  if (!is_kv_dtype(k_cache.dtype()) || v_cache.dtype() != k_cache.dtype())
    fail(ErrorCode::kInvalidArgument, op, ": caches ", k_cache.str(), " / ", v_cache.str(),
         " must both be f32, f16 or bf16");
}
}  // namespace

int64_t check_attention(const char* op, const Tensor& q, const Tensor& k_cache,
                        const Tensor& v_cache, const AttentionBatch& batch,
                        const AttentionParams& p, const Tensor& out) {
  check_f32(op, "q", q);
  check_f32(op, "out", out);
  check_kv_caches(op, k_cache, v_cache);
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0 || p.block_size <= 0 ||
      p.num_heads % p.num_kv_heads != 0)
    fail(ErrorCode::kInvalidArgument, op, ": bad params heads=", p.num_heads,
         " kv_heads=", p.num_kv_heads, " head_dim=", p.head_dim, " block_size=", p.block_size);
  const int64_t width = int64_t{p.num_heads} * p.head_dim;
  if (cols_of(q) != width || out.numel() != q.numel())
    fail(ErrorCode::kInvalidArgument, op, ": q ", q.str(), " / out ", out.str(),
         " should be [tokens, ", width, "]");
  if (k_cache.ndim() != 4 || k_cache.dim(1) != p.block_size || k_cache.dim(2) != p.num_kv_heads ||
      k_cache.dim(3) != p.head_dim || v_cache.shape() != k_cache.shape())
    fail(ErrorCode::kInvalidArgument, op, ": caches ", k_cache.str(), " / ", v_cache.str(),
         " should be [blocks, ", p.block_size, ", ", p.num_kv_heads, ", ", p.head_dim, "]");
  check_index(op, "query_start", batch.query_start);
  check_index(op, "context_lens", batch.context_lens);
  check_index(op, "block_tables", batch.block_tables);
  const int64_t num_seqs = batch.context_lens.size();
  if (batch.query_start.size() != num_seqs + 1 || batch.max_blocks_per_seq < 0 ||
      batch.block_tables.size() < num_seqs * batch.max_blocks_per_seq)
    fail(ErrorCode::kInvalidArgument, op, ": batch arrays do not match ", num_seqs, " sequences");
  return num_seqs;
}

void check_attention_values(const char* op, const Tensor& q, const Tensor& k_cache,
                            const HostBatch& batch, const AttentionParams& p) {
  const auto num_seqs = static_cast<int64_t>(batch.context_lens.size());
  if (num_seqs > 0 && (batch.query_start[0] != 0 || batch.query_start[num_seqs] != rows_of(q)))
    fail(ErrorCode::kInvalidArgument, op, ": query_start must run from 0 to ", rows_of(q));
  const int64_t num_blocks = k_cache.dim(0);
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t q_len = batch.query_start[s + 1] - batch.query_start[s];
    const int64_t ctx = batch.context_lens[s];
    if (q_len < 0 || q_len > ctx)
      fail(ErrorCode::kInvalidArgument, op, ": sequence ", s, " has ", q_len,
           " query rows but context ", ctx);
    const int64_t blocks = (ctx + p.block_size - 1) / p.block_size;
    if (blocks > batch.max_blocks_per_seq)
      fail(ErrorCode::kInvalidArgument, op, ": sequence ", s, " needs ", blocks,
           " blocks, table holds ", batch.max_blocks_per_seq);
    for (int64_t b = 0; b < blocks; ++b) {
      const int32_t id = batch.block_tables[s * batch.max_blocks_per_seq + b];
      if (id < 0 || id >= num_blocks)
        fail(ErrorCode::kOutOfRange, op, ": block id ", id, " of sequence ", s, " outside [0, ",
             num_blocks, ")");
    }
  }
}

int64_t check_kv_append(const char* op, const Tensor& k, const Tensor& v, const Indices& slots,
                        const Tensor& k_cache, const Tensor& v_cache) {
  check_index(op, "slots", slots);
  check_f32(op, "k", k);
  check_f32(op, "v", v);
  check_kv_caches(op, k_cache, v_cache);
  if (k_cache.ndim() != 4 || v_cache.shape() != k_cache.shape())
    fail(ErrorCode::kInvalidArgument, op, ": caches ", k_cache.str(), " / ", v_cache.str(),
         " should both be [blocks, block_size, kv_heads, head_dim]");
  const int64_t width = k_cache.dim(2) * k_cache.dim(3);
  if (cols_of(k) != width || k.shape() != v.shape() || rows_of(k) != slots.size())
    fail(ErrorCode::kInvalidArgument, op, ": k ", k.str(), " / v ", v.str(), " should be [",
         slots.size(), ", ", width, "]");
  return width;
}

void check_slot_values(const char* op, std::span<const int32_t> slots, const Tensor& k_cache) {
  const int64_t capacity = k_cache.dim(0) * k_cache.dim(1);
  for (int32_t s : slots)
    if (s < -1 || s >= capacity)  // -1: a padding row, nothing written
      fail(ErrorCode::kOutOfRange, op, ": slot ", s, " outside [0, ", capacity, ")");
}

int check_rope(const char* op, const Tensor& x, int num_heads, const Indices& positions,
               const RopeParams& p) {
  check_f32(op, "x", x);
  check_index(op, "positions", positions);
  const int rot = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  if (p.head_dim <= 0 || num_heads <= 0 || rot <= 0 || rot > p.head_dim || rot % 2 != 0)
    fail(ErrorCode::kInvalidArgument, op, ": bad head_dim ", p.head_dim, " rotary_dim ",
         p.rotary_dim, " heads ", num_heads);
  if (cols_of(x) != int64_t{num_heads} * p.head_dim || rows_of(x) != positions.size())
    fail(ErrorCode::kInvalidArgument, op, ": x ", x.str(), " should be [", positions.size(), ", ",
         num_heads * p.head_dim, "]");
  return rot;
}

}  // namespace tessera::ops::detail
