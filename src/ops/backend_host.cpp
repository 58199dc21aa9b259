// The host implementation tables (backend.h): the reference, the fast CPU ops, and the guarded
// device, whose ops are the fast CPU ones run with every argument's memory opened to host code for
// the duration of the op, and closed again after (see core/allocator.h). Holds no state.
#include <string_view>

#include "tessera/core/error.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/backend.h"

namespace tessera::ops {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kEmbedding:
      return "embedding";
    case Op::kEmbeddingShard:
      return "embedding_shard";
    case Op::kRmsNorm:
      return "rms_norm";
    case Op::kAdd:
      return "add";
    case Op::kRope:
      return "rope";
    case Op::kMatmul:
      return "matmul";
    case Op::kSiluMul:
      return "silu_mul";
    case Op::kSoftmax:
      return "softmax";
    case Op::kArgmax:
      return "argmax";
    case Op::kGatherRows:
      return "gather_rows";
    case Op::kKvAppend:
      return "kv_append";
    case Op::kRopeKvAppend:
      return "rope_kv_append";
    case Op::kPagedAttention:
      return "paged_attention";
    case Op::kMoeRoute:
      return "moe_route";
    case Op::kMoeExperts:
      return "moe_experts";
    case Op::kSample:
      return "sample";
  }
  return "?";
}

namespace {

// Every op; every weight dtype for the ops that take weights, F32 for the rest; the packed
// layouts (made by pack_weight, see ref_supports) for matmul alone.
bool host_supports(Op op, DType dtype) {
  if (is_packed(dtype)) return op == Op::kMatmul;
  if (op == Op::kKvAppend || op == Op::kRopeKvAppend || op == Op::kPagedAttention)
    return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;  // the cache's
  if (op == Op::kMatmul || op == Op::kEmbedding || op == Op::kEmbeddingShard ||
      op == Op::kRmsNorm || op == Op::kMoeExperts)
    return dtype != DType::kI32;
  return dtype == DType::kF32;
}

// The reference reads weights row-major only: the CPU's packed layouts are not its business.
bool ref_supports(Op op, DType dtype) { return !is_packed(dtype) && host_supports(op, dtype); }

// The CPU's pack_weight (guarded: the same, with both tensors opened to host code).
Tensor cpu_pack_weight(const Tensor& w, const std::shared_ptr<Allocator>& allocator) {
  HostAccess open{&w};
  const DType p = cpu::pack_target(w);
  if (p == w.dtype()) return w;
  Tensor out = Tensor::empty(w.shape(), p, allocator);
  HostAccess open_out{&out};
  cpu::pack_weight_into(w, out);
  return out;
}

namespace guarded {

void embedding(const Tensor& table, const Indices& ids, Tensor& out) {
  HostAccess open{&table, &ids.tensor(), &out};
  cpu::embedding(table, ids, out);
}
void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out) {
  HostAccess open{&table, &ids.tensor(), &out};
  cpu::embedding_shard(table, ids, first_id, out);
}
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  HostAccess open{&x, &weight, &out};
  cpu::rms_norm(x, weight, eps, out);
}
void add(Tensor& x, const Tensor& y) {
  HostAccess open{&x, &y};
  cpu::add(x, y);
}
void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p) {
  HostAccess open{&x, &positions.tensor()};
  cpu::rope(x, num_heads, positions, p);
}
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  HostAccess open{&x, &w, &bias, &y};
  cpu::matmul(x, w, bias, y);
}
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets) {
  std::vector<const Tensor*> all{&x};
  for (const MatmulTarget& t : targets) all.insert(all.end(), {t.w, t.bias, t.y});
  HostAccess open(all);
  cpu::matmul_many(x, targets);
}
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y) {
  HostAccess open{&x, &w, &bias, &scratch, &y};
  cpu::matmul_add(x, w, bias, scratch, y);
}
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  HostAccess open{&gate, &up, &out};
  cpu::silu_mul(gate, up, out);
}
void softmax(Tensor& x) {
  HostAccess open{&x};
  cpu::softmax(x);
}
std::vector<int32_t> argmax(const Tensor& logits) {
  HostAccess open{&logits};
  return cpu::argmax(logits);
}
void gather_rows(const Tensor& src, const Indices& rows, Tensor& out) {
  HostAccess open{&src, &rows.tensor(), &out};
  cpu::gather_rows(src, rows, out);
}
void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache) {
  HostAccess open{&k, &v, &slots.tensor(), &k_cache, &v_cache};
  cpu::kv_append(k, v, slots, k_cache, v_cache);
}
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
  HostAccess open{&q,
                  &k_cache,
                  &v_cache,
                  &out,
                  &batch.query_start.tensor(),
                  &batch.context_lens.tensor(),
                  &batch.block_tables.tensor()};
  cpu::paged_attention(q, k_cache, v_cache, batch, p, out);
}
void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  HostAccess open{&k, &v, &positions.tensor(), &slots.tensor(), &k_cache, &v_cache};
  cpu::rope_kv_append(k, v, num_kv_heads, positions, p, slots, k_cache, v_cache);
}
void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights) {
  HostAccess open{&logits, &ids, &weights};
  cpu::moe_route(logits, p, ids, weights);
}
void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& ids, const Tensor& weights, int first_expert, Tensor& out) {
  HostAccess open{&x, &w_gate, &w_up, &w_down, &ids.tensor(), &weights, &out};
  cpu::moe_experts(x, w_gate, w_up, w_down, ids, weights, first_expert, out);
}

void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs) {
  HostAccess open{&logits, &meta.words, &tokens, &logprobs};
  cpu::sample(logits, meta, tokens, logprobs);
}

}  // namespace guarded
}  // namespace

const Backend& ref_backend() {
  static constexpr Backend kRef{
      .name = "ref",
      .supports = ref_supports,
      .embedding = ref::embedding,
      .embedding_shard = ref::embedding_shard,
      .rms_norm = ref::rms_norm,
      .add = ref::add,
      .rope = ref::rope,
      .matmul = ref::matmul,
      .matmul_many = ref::matmul_many,
      .matmul_add = ref::matmul_add,
      .silu_mul = ref::silu_mul,
      .softmax = ref::softmax,
      .argmax = ref::argmax,
      .gather_rows = ref::gather_rows,
      .kv_append = ref::kv_append,
      .paged_attention = ref::paged_attention,
      .moe_route = ref::moe_route,
      .moe_experts = ref::moe_experts,
      .rope_kv_append = ref::rope_kv_append,
      .sample = ref::sample,
  };
  return kRef;
}

const Backend& cpu_backend() {
  static constexpr Backend kCpu{
      .name = "cpu",
      .supports = host_supports,
      .embedding = cpu::embedding,
      .embedding_shard = cpu::embedding_shard,
      .rms_norm = cpu::rms_norm,
      .add = cpu::add,
      .rope = cpu::rope,
      .matmul = cpu::matmul,
      .matmul_many = cpu::matmul_many,
      .matmul_add = cpu::matmul_add,
      .silu_mul = cpu::silu_mul,
      .softmax = cpu::softmax,
      .argmax = cpu::argmax,
      .gather_rows = cpu::gather_rows,
      .kv_append = cpu::kv_append,
      .paged_attention = cpu::paged_attention,
      .moe_route = cpu::moe_route,
      .moe_experts = cpu::moe_experts,
      .rope_kv_append = cpu::rope_kv_append,
      .sample = cpu::sample,
      .pack_weight = cpu_pack_weight,
      .rms_norm_matmul_many = cpu::rms_norm_matmul_many,
      .silu_mul_matmul = cpu::silu_mul_matmul,
      .prefetch_weights = cpu::prefetch_weights,
  };
  return kCpu;
}

const Backend& guarded_backend() {
  static constexpr Backend kGuarded{
      .name = "guarded",
      .supports = host_supports,
      .embedding = guarded::embedding,
      .embedding_shard = guarded::embedding_shard,
      .rms_norm = guarded::rms_norm,
      .add = guarded::add,
      .rope = guarded::rope,
      .matmul = guarded::matmul,
      .matmul_many = guarded::matmul_many,
      .matmul_add = guarded::matmul_add,
      .silu_mul = guarded::silu_mul,
      .softmax = guarded::softmax,
      .argmax = guarded::argmax,
      .gather_rows = guarded::gather_rows,
      .kv_append = guarded::kv_append,
      .paged_attention = guarded::paged_attention,
      .moe_route = guarded::moe_route,
      .moe_experts = guarded::moe_experts,
      .rope_kv_append = guarded::rope_kv_append,
      .sample = guarded::sample,
      .pack_weight = cpu_pack_weight,
  };
  return kGuarded;
}

const Backend& backend_for(Device device) {
  switch (device.type) {
    case DeviceType::kCPU:
      return cpu_backend();
    case DeviceType::kGuarded:
      return guarded_backend();
    case DeviceType::kCUDA:
      if (const Backend* b = cuda_backend()) return *b;
      break;
  }
  fail(ErrorCode::kUnsupported, "no ops for ", device.str(), ": this build has no CUDA");
}

}  // namespace tessera::ops
