// Fused ops of the interface on the host tables, defined as the composition of the ops they fuse:
// the reference composes the reference ops (so it is the spec of every fused kernel), the fast CPU
// table the fast CPU ops (a host loop gains nothing from fusing them). No state.
#include "tessera/ops/ops.h"

namespace tessera::ops {

namespace ref {
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets) {
  for (const MatmulTarget& t : targets) ref::matmul(x, *t.w, *t.bias, *t.y);
}

void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y) {
  ref::matmul(x, w, bias, scratch);
  ref::add(y, scratch);
}

void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  ref::rope(k, num_kv_heads, positions, p);
  ref::kv_append(k, v, slots, k_cache, v_cache);
}
}  // namespace ref

namespace cpu {
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y) {
  cpu::matmul(x, w, bias, scratch);
  cpu::add(y, scratch);
}

void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  cpu::rope(k, num_kv_heads, positions, p);
  cpu::kv_append(k, v, slots, k_cache, v_cache);
}
}  // namespace cpu

}  // namespace tessera::ops
