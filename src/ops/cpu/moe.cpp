// ops::cpu Mixture-of-Experts. The router is the reference's (T x E work, negligible next to the
// experts). The experts are grouped: the step's (token, choice) pairs are bucketed by expert, each
// expert's tokens gathered into one [n, H] block, and that block goes through the fast matmul
// (cpu::matmul on the expert's [F, H] / [H, F] slice of the stacked tensors, still quantized),
// silu_mul, and a weighted scatter-add into out. An expert with no tokens costs nothing; scratch
// blocks are host buffers sized by the busiest expert.
#include <algorithm>
#include <vector>

#include "../check_moe.h"

namespace tessera::ops::cpu {

void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights) {
  ref::moe_route(logits, p, ids, weights);
}

void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& idx, const Tensor& weights, int first_expert, Tensor& out) {
  detail::require_host("moe_experts", {&x, &w_gate, &w_up, &w_down, &idx.tensor(), &weights, &out});
  const int64_t E = detail::check_moe_experts(x, w_gate, w_up, w_down, idx, weights, out);
  const int64_t T = x.dim(0), F = w_gate.dim(1), H = w_gate.dim(2);
  const auto ids = detail::host_span("moe_experts", "ids", idx);
  const int64_t k = T == 0 ? 0 : static_cast<int64_t>(ids.size()) / T;
  float* o = out.data_as<float>();
  std::fill(o, o + T * H, 0.0f);

  const detail::ExpertGroups g = detail::group_by_expert(ids, first_expert, E);
  const std::vector<int64_t>& start = g.start;
  const std::vector<int64_t>& pair = g.pair;
  const int64_t busiest = g.busiest;
  if (busiest == 0) return;

  Tensor xs = Tensor::empty({busiest, H}, DType::kF32);
  Tensor gate = Tensor::empty({busiest, F}, DType::kF32);
  Tensor up = Tensor::empty({busiest, F}, DType::kF32);
  Tensor down = Tensor::empty({busiest, H}, DType::kF32);
  const float* xp = x.data_as<float>();
  const float* wt = weights.data_as<float>();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    const int64_t* mine = pair.data() + start[e];
    for (int64_t r = 0; r < n; ++r)
      std::copy_n(xp + (mine[r] / k) * H, H, xs.data_as<float>() + r * H);
    const Tensor xe = xs.slice(0, n);
    Tensor ge = gate.slice(0, n), ue = up.slice(0, n), de = down.slice(0, n);
    cpu::matmul(xe, w_gate.slice(e, e + 1).view({F, H}), Tensor(), ge);
    cpu::matmul(xe, w_up.slice(e, e + 1).view({F, H}), Tensor(), ue);
    cpu::silu_mul(ge, ue, ge);
    cpu::matmul(ge, w_down.slice(e, e + 1).view({H, F}), Tensor(), de);
    for (int64_t r = 0; r < n; ++r) {
      const float w = wt[mine[r]];
      float* dst = o + (mine[r] / k) * H;
      const float* src = de.data_as<float>() + r * H;
      for (int64_t c = 0; c < H; ++c) dst[c] += w * src[c];
    }
  }
}

}  // namespace tessera::ops::cpu
