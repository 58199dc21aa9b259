// ops::* entry points: route each call to the backend that owns its tensors. CPU tensors go to
// ops::cpu; CUDA kernels are not built yet, so CUDA tensors fail with kUnsupported.
#include <initializer_list>

#include "tessera/core/error.h"
#include "tessera/ops/ops.h"

namespace tessera::ops {
namespace {

// True when every defined tensor is on the CPU; throws when any lives on a CUDA device.
void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->defined() && !t->device().is_cpu())
      fail(ErrorCode::kUnsupported, "CUDA op ", op, " not built yet (tensor ", t->str(), ")");
  }
}

}  // namespace

void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) {
  require_cpu("embedding", {&table, &out});
  cpu::embedding(table, ids, out);
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  require_cpu("rms_norm", {&x, &weight, &out});
  cpu::rms_norm(x, weight, eps, out);
}

void add(Tensor& x, const Tensor& y) {
  require_cpu("add", {&x, &y});
  cpu::add(x, y);
}

void rope(Tensor& x, int num_heads, std::span<const int32_t> positions, const RopeParams& p) {
  require_cpu("rope", {&x});
  cpu::rope(x, num_heads, positions, p);
}

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  require_cpu("matmul", {&x, &w, &bias, &y});
  cpu::matmul(x, w, bias, y);
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_cpu("silu_mul", {&gate, &up, &out});
  cpu::silu_mul(gate, up, out);
}

void softmax(Tensor& x) {
  require_cpu("softmax", {&x});
  cpu::softmax(x);
}

std::vector<int32_t> argmax(const Tensor& logits) {
  require_cpu("argmax", {&logits});
  return cpu::argmax(logits);
}

void kv_append(const Tensor& k, const Tensor& v, std::span<const int32_t> slots, Tensor& k_cache,
               Tensor& v_cache) {
  require_cpu("kv_append", {&k, &v, &k_cache, &v_cache});
  cpu::kv_append(k, v, slots, k_cache, v_cache);
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
  require_cpu("paged_attention", {&q, &k_cache, &v_cache, &out});
  cpu::paged_attention(q, k_cache, v_cache, batch, p, out);
}

}  // namespace tessera::ops
