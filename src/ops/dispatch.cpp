// ops::* entry points: the device-agnostic argument checks (check.h), written once for every
// device, then the implementation table of the tensors' device (backend.h). Every tensor of a
// call, index arrays included, must live on one device. Holds no state.
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "check.h"
#include "check_moe.h"
#include "tessera/core/error.h"
#include "tessera/kernels/sample_layout.h"
#include "tessera/ops/backend.h"
#include "tessera/ops/ops.h"

namespace tessera::ops {

Indices::Indices(Tensor t) : t_(std::move(t)) {}

Indices::Indices(std::span<const int32_t> host) {
  auto storage = Storage::borrow(host.data(), host.size_bytes(), nullptr, Device::cpu());
  t_ =
      Tensor::from_storage(std::move(storage), 0, {static_cast<int64_t>(host.size())}, DType::kI32);
}

namespace {

// The one device of the defined tensors, or an error naming the two that differ.
Device device_of(Op op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
    } else if (t->device() != first->device()) {
      fail(ErrorCode::kInvalidArgument, op_name(op), ": tensors on different devices (",
           first->str(), " and ", t->str(), ")");
    }
  }
  if (!first) fail(ErrorCode::kInvalidArgument, op_name(op), ": no tensors");
  return first->device();
}

// The table entry for `op` on `device`, or kUnsupported naming the op, device and dtype.
template <typename Fn>
Fn entry(Op op, Device device, DType dtype, Fn Backend::*member) {
  const Backend& b = backend_for(device);
  Fn fn = b.*member;
  if (!fn || !b.supports(op, dtype))
    fail(ErrorCode::kUnsupported, op_name(op), " for ", dtype_name(dtype),
         " is not implemented on ", device.str(), " yet");
  return fn;
}

}  // namespace

Tensor pack_weight(const Tensor& w, const std::shared_ptr<Allocator>& allocator) {
  if (!w.defined()) return w;
  const Backend& b = backend_for(w.device());
  return b.pack_weight ? b.pack_weight(w, allocator) : w;
}

void embedding(const Tensor& table, const Indices& ids, Tensor& out) {
  const Device d = device_of(Op::kEmbedding, {&table, &ids.tensor(), &out});
  detail::check_embedding("embedding", table, ids, out);
  entry(Op::kEmbedding, d, table.dtype(), &Backend::embedding)(table, ids, out);
}

void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out) {
  const Device d = device_of(Op::kEmbeddingShard, {&table, &ids.tensor(), &out});
  detail::check_embedding("embedding_shard", table, ids, out);
  entry(Op::kEmbeddingShard, d, table.dtype(), &Backend::embedding_shard)(table, ids, first_id,
                                                                          out);
}

namespace {

// rms_norm's checks (rms_norm_matmul_many's for the rows it normalises into `out` or in place).
void check_rms_norm(const char* op, const Tensor& x, const Tensor& weight, const Tensor& out) {
  detail::check_f32(op, "x", x);
  detail::check_f32(op, "out", out);
  detail::check_dense(op, "weight", weight);
  if (weight.numel() != detail::cols_of(x) || out.shape() != x.shape())
    fail(ErrorCode::kInvalidArgument, op, ": x ", x.str(), " weight ", weight.str(), " out ",
         out.str());
}

}  // namespace

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  const Device d = device_of(Op::kRmsNorm, {&x, &weight, &out});
  check_rms_norm("rms_norm", x, weight, out);
  entry(Op::kRmsNorm, d, weight.dtype(), &Backend::rms_norm)(x, weight, eps, out);
}

void add(Tensor& x, const Tensor& y) {
  const Device d = device_of(Op::kAdd, {&x, &y});
  detail::check_f32("add", "x", x);
  detail::check_f32("add", "y", y);
  if (x.numel() != y.numel()) fail(ErrorCode::kInvalidArgument, "add: ", x.str(), " += ", y.str());
  entry(Op::kAdd, d, DType::kF32, &Backend::add)(x, y);
}

void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p) {
  const Device d = device_of(Op::kRope, {&x, &positions.tensor()});
  detail::check_rope("rope", x, num_heads, positions, p);
  entry(Op::kRope, d, DType::kF32, &Backend::rope)(x, num_heads, positions, p);
}

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const Device d = device_of(Op::kMatmul, {&x, &w, &bias, &y});
  detail::check_matmul("matmul", x, w, bias, y);
  entry(Op::kMatmul, d, w.dtype(), &Backend::matmul)(x, w, bias, y);
}

namespace {

// matmul_many's checks of its targets against x (rms_norm_matmul_many's too, for the rows it
// would normalise): every tensor on x's device, every shape and weight dtype supported there.
void check_targets(const char* op, const Tensor& x, std::span<const MatmulTarget> targets) {
  const Device d = x.device();
  for (const MatmulTarget& t : targets) {
    if (!t.w || !t.bias || !t.y)
      fail(ErrorCode::kInvalidArgument, op, ": a target without w, bias or y");
    for (const Tensor* u : std::initializer_list<const Tensor*>{t.w, t.bias, t.y})
      if (u->defined() && u->device() != d)
        fail(ErrorCode::kInvalidArgument, op, ": tensors on different devices (", x.str(), " and ",
             u->str(), ")");
  }
  for (const MatmulTarget& t : targets) {
    detail::check_matmul(op, x, *t.w, *t.bias, *t.y);
    entry(Op::kMatmul, d, t.w->dtype(), &Backend::matmul_many);  // throws when unsupported
  }
}

}  // namespace

void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets) {
  if (targets.empty()) return;
  check_targets("matmul_many", x, targets);
  backend_for(x.device()).matmul_many(x, targets);
}

void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y) {
  const Device d = device_of(Op::kMatmul, {&x, &w, &bias, &scratch, &y});
  detail::check_matmul("matmul_add", x, w, bias, y);
  detail::check_f32("matmul_add", "scratch", scratch);
  if (scratch.shape() != y.shape())
    fail(ErrorCode::kInvalidArgument, "matmul_add: scratch ", scratch.str(), " is not y's shape ",
         y.str());
  entry(Op::kMatmul, d, w.dtype(), &Backend::matmul_add)(x, w, bias, scratch, y);
}

void rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps, Tensor& normed,
                          std::span<const MatmulTarget> targets) {
  const Device d = device_of(Op::kRmsNorm, {&x, &norm, &normed});
  const Backend& b = backend_for(d);
  if (b.rms_norm_matmul_many && !targets.empty()) {
    check_rms_norm("rms_norm_matmul_many", x, norm, normed);
    entry(Op::kRmsNorm, d, norm.dtype(), &Backend::rms_norm);  // throws when unsupported
    check_targets("rms_norm_matmul_many", x, targets);
    if (b.rms_norm_matmul_many(x, norm, eps, targets)) return;
  }
  rms_norm(x, norm, eps, normed);
  matmul_many(normed, targets);
}

void silu_mul_matmul(Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& scratch, Tensor& y, bool accumulate) {
  const Device d = device_of(Op::kMatmul, {&gate, &up, &w, &bias, &scratch, &y});
  const Backend& b = backend_for(d);
  if (b.silu_mul_matmul) {
    detail::check_f32("silu_mul_matmul", "gate", gate);
    detail::check_f32("silu_mul_matmul", "up", up);
    if (gate.shape() != up.shape())
      fail(ErrorCode::kInvalidArgument, "silu_mul_matmul: ", gate.str(), " ", up.str());
    entry(Op::kSiluMul, d, DType::kF32, &Backend::silu_mul);
    detail::check_matmul("silu_mul_matmul", gate, w, bias, y);
    entry(Op::kMatmul, d, w.dtype(), &Backend::matmul);
    if (accumulate) {
      detail::check_f32("silu_mul_matmul", "scratch", scratch);
      if (scratch.shape() != y.shape())
        fail(ErrorCode::kInvalidArgument, "silu_mul_matmul: scratch ", scratch.str(),
             " is not y's shape ", y.str());
    }
    if (b.silu_mul_matmul(gate, up, w, bias, scratch, y, accumulate)) return;
  }
  silu_mul(gate, up, gate);
  if (accumulate)
    matmul_add(gate, w, bias, scratch, y);
  else
    matmul(gate, w, bias, y);
}

void prefetch_weights(std::span<const MatmulTarget> targets) {
  if (targets.empty()) return;
  Device d;
  for (size_t i = 0; i < targets.size(); ++i) {
    const Tensor* w = targets[i].w;
    if (!w || !w->defined())
      fail(ErrorCode::kInvalidArgument, "prefetch_weights: target ", i, " has no weight");
    if (i == 0)
      d = w->device();
    else if (w->device() != d)
      fail(ErrorCode::kInvalidArgument, "prefetch_weights: weights on different devices (",
           targets[0].w->str(), " and ", w->str(), ")");
  }
  if (const auto fn = backend_for(d).prefetch_weights) fn(targets);
}

int64_t exact_row_split(Device device, int64_t rows) {
  // CUDA's kernels are not yet checked for it (they have not run on a GPU): no cut there.
  return device.is_cpu() || device.is_guarded() ? cpu::exact_row_split(rows) : 0;
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  const Device d = device_of(Op::kSiluMul, {&gate, &up, &out});
  detail::check_f32("silu_mul", "gate", gate);
  detail::check_f32("silu_mul", "up", up);
  detail::check_f32("silu_mul", "out", out);
  if (gate.shape() != up.shape() || out.numel() != gate.numel())
    fail(ErrorCode::kInvalidArgument, "silu_mul: ", gate.str(), " ", up.str(), " -> ", out.str());
  entry(Op::kSiluMul, d, DType::kF32, &Backend::silu_mul)(gate, up, out);
}

void softmax(Tensor& x) {
  const Device d = device_of(Op::kSoftmax, {&x});
  detail::check_f32("softmax", "x", x);
  entry(Op::kSoftmax, d, DType::kF32, &Backend::softmax)(x);
}

std::vector<int32_t> argmax(const Tensor& logits) {
  const Device d = device_of(Op::kArgmax, {&logits});
  detail::check_f32("argmax", "logits", logits);
  return entry(Op::kArgmax, d, DType::kF32, &Backend::argmax)(logits);
}

void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs) {
  const Device d = device_of(Op::kSample, {&logits, &meta.words, &tokens, &logprobs});
  detail::check_f32("sample", "logits", logits);
  detail::check_f32("sample", "logprobs", logprobs);
  detail::check_dense("sample", "tokens", tokens);
  detail::check_dense("sample", "words", meta.words);
  const int64_t cols = int64_t{meta.max_top} + 1;
  if (meta.rows < 0 || meta.vocab <= 0 || meta.max_top < 0 || meta.max_top > kMaxSampleTop ||
      logits.shape() != Shape{meta.rows, meta.vocab} || tokens.dtype() != DType::kI32 ||
      tokens.shape() != Shape{meta.rows, cols} || logprobs.shape() != tokens.shape() ||
      meta.words.dtype() != DType::kI32 ||
      meta.words.numel() <
          kernels::sample::kHeaderWords + int64_t{meta.rows} * kernels::sample::kRowWords)
    fail(ErrorCode::kInvalidArgument, "sample: ", meta.rows, " rows of ", meta.vocab,
         " tokens with ", meta.max_top, " top logprobs do not fit logits ", logits.str(),
         ", tokens ", tokens.str(), ", logprobs ", logprobs.str(), ", words ", meta.words.str());
  if (meta.rows == 0) return;
  entry(Op::kSample, d, DType::kF32, &Backend::sample)(logits, meta, tokens, logprobs);
}

void gather_rows(const Tensor& src, const Indices& rows, Tensor& out) {
  const Device d = device_of(Op::kGatherRows, {&src, &rows.tensor(), &out});
  detail::check_gather_rows("gather_rows", src, rows, out);
  entry(Op::kGatherRows, d, DType::kF32, &Backend::gather_rows)(src, rows, out);
}

void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache) {
  const Device d = device_of(Op::kKvAppend, {&k, &v, &slots.tensor(), &k_cache, &v_cache});
  detail::check_kv_append("kv_append", k, v, slots, k_cache, v_cache);
  entry(Op::kKvAppend, d, k_cache.dtype(), &Backend::kv_append)(k, v, slots, k_cache, v_cache);
}

void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  const Device d = device_of(Op::kRopeKvAppend,
                             {&k, &v, &positions.tensor(), &slots.tensor(), &k_cache, &v_cache});
  detail::check_rope("rope_kv_append", k, num_kv_heads, positions, p);
  detail::check_kv_append("rope_kv_append", k, v, slots, k_cache, v_cache);
  entry(Op::kRopeKvAppend, d, k_cache.dtype(), &Backend::rope_kv_append)(
      k, v, num_kv_heads, positions, p, slots, k_cache, v_cache);
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
  const Device d =
      device_of(Op::kPagedAttention, {&q, &k_cache, &v_cache, &out, &batch.query_start.tensor(),
                                      &batch.context_lens.tensor(), &batch.block_tables.tensor()});
  detail::check_attention("paged_attention", q, k_cache, v_cache, batch, p, out);
  entry(Op::kPagedAttention, d, k_cache.dtype(), &Backend::paged_attention)(q, k_cache, v_cache,
                                                                            batch, p, out);
}

void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights) {
  const Device d = device_of(Op::kMoeRoute, {&logits, &ids, &weights});
  detail::check_moe_route(logits, p, ids, weights);
  entry(Op::kMoeRoute, d, DType::kF32, &Backend::moe_route)(logits, p, ids, weights);
}

void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& ids, const Tensor& weights, int first_expert, Tensor& out) {
  const Device d =
      device_of(Op::kMoeExperts, {&x, &w_gate, &w_up, &w_down, &ids.tensor(), &weights, &out});
  detail::check_moe_experts(x, w_gate, w_up, w_down, ids, weights, out);
  entry(Op::kMoeExperts, d, w_up.dtype(), &Backend::moe_experts);
  entry(Op::kMoeExperts, d, w_down.dtype(), &Backend::moe_experts);
  entry(Op::kMoeExperts, d, w_gate.dtype(), &Backend::moe_experts)(x, w_gate, w_up, w_down, ids,
                                                                   weights, first_expert, out);
}

}  // namespace tessera::ops
