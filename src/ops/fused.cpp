// Fused ops of the interface on the host tables, defined as the composition of the ops they fuse:
// the reference composes the reference ops (so it is the spec of every fused kernel); the fast CPU
// table composes the fast CPU ops too, except on the integer matmul path, where the elementwise op
// in front (rms_norm, silu_mul) runs in the activation quantizer's pass and the residual add in
// the matmul's chunks: at decode those ops are a few hundred elements each, and run on their own
// they were part of the serial stretches between the pool's parallel passes (16-18% of a layer's
// time at two threads, each op with its own dispatch and checks). No state.
#include "check.h"
#include "cpu/int8_dot.h"
#include "cpu/simd.h"
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
namespace {
// The integer path with AVX2 row kernels (the fused rows and adds are the AVX2 ones cpu::rms_norm,
// silu_mul and add run there); k a whole number of registers, so a row kernel's vector loop
// covers each row as the elementwise op's loop over the whole tensor does.
bool fusable(std::initializer_list<const Tensor*> weights, int64_t k) {
  if (!detail::have_avx2() || k % 8 != 0) return false;
  for (const Tensor* w : weights)
    if (!detail::use_int8(w->dtype())) return false;
  return true;
}
}  // namespace

void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y) {
  ops::detail::require_host("matmul_add", {&x, &w, &bias, &scratch, &y});
  const auto s = ops::detail::check_matmul("matmul_add", x, w, bias, y);
  if (!fusable({&w}, s.k)) {
    cpu::matmul(x, w, bias, scratch);
    cpu::add(y, scratch);
    return;
  }
  if (s.m == 0 || s.n == 0) return;
  const MatmulTarget t{&w, &bias, &scratch};
  detail::matmul_int8_many(x, {&t, 1}, s.m, s.k, {}, y.data_as<float>());
}

bool rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps,
                          std::span<const MatmulTarget> targets) {
  const int64_t k = ops::detail::cols_of(x), m = ops::detail::rows_of(x);
  if (norm.dtype() != DType::kF32 || targets.empty()) return false;
  const bool fine = targets[0].fine_activations;
  for (const MatmulTarget& t : targets)
    if (!fusable({t.w}, k) || t.fine_activations != fine) return false;
  ops::detail::require_host("rms_norm_matmul_many", {&x, &norm});
  for (const MatmulTarget& t : targets)
    ops::detail::require_host("rms_norm_matmul_many", {t.w, t.bias, t.y});
  if (m == 0) return true;
  detail::matmul_int8_many(
      x, targets, m, k,
      {.kind = detail::ActRows::Kind::kRmsNorm, .norm = norm.data_as<float>(), .eps = eps});
  return true;
}

bool silu_mul_matmul(const Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& scratch, Tensor& y, bool accumulate) {
  const int64_t k = ops::detail::cols_of(gate), m = ops::detail::rows_of(gate);
  if (!fusable({&w}, k)) return false;
  ops::detail::require_host("silu_mul_matmul", {&gate, &up, &w, &bias, &scratch, &y});
  if (m == 0 || w.dim(0) == 0) return true;
  const MatmulTarget t{&w, &bias, accumulate ? &scratch : &y};
  detail::matmul_int8_many(gate, {&t, 1}, m, k,
                           {.kind = detail::ActRows::Kind::kSiluMul, .up = up.data_as<float>()},
                           accumulate ? y.data_as<float>() : nullptr);
  return true;
}

void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  cpu::rope(k, num_kv_heads, positions, p);
  cpu::kv_append(k, v, slots, k_cache, v_cache);
}
}  // namespace cpu

}  // namespace tessera::ops
