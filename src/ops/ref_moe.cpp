// The reference Mixture-of-Experts ops: the router as sort-free selection over a softmax, and the
// experts as the plain per-token loop (each chosen expert's FFN on one token at a time, weight
// rows dequantized as they are read, fp32 accumulation). The specification for ops::cpu's
// grouped version and for any device kernel.
#include <cmath>
#include <algorithm>
#include <vector>

#include "check_moe.h"

namespace tessera::ops::ref {

void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights) {
  detail::require_host("moe_route", {&logits, &ids, &weights});
  detail::check_moe_route(logits, p, ids, weights);
  const int64_t T = detail::rows_of(logits), E = detail::cols_of(logits);
  const float* lg = logits.data_as<float>();
  int32_t* id = ids.data_as<int32_t>();
  float* wt = weights.data_as<float>();
  std::vector<float> prob(static_cast<size_t>(E));
  std::vector<bool> taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = lg + t * E;
    if (p.router == MoeRouter::kSigmoid) {
      id[t] = 0;
      wt[t] = 1.0f / (1.0f + std::exp(-row[0]));
      continue;
    }
    float mx = row[0];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, row[e]);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += prob[e] = std::exp(row[e] - mx);
    for (int64_t e = 0; e < E; ++e) prob[e] /= sum;
    std::fill(taken.begin(), taken.end(), false);
    float chosen = 0.0f;
    for (int j = 0; j < p.k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (!taken[e] && (best < 0 || prob[e] > prob[best])) best = e;
      taken[best] = true;
      id[t * p.k + j] = static_cast<int32_t>(best);
      wt[t * p.k + j] = prob[best];
      chosen += prob[best];
    }
    if (p.renormalize)
      for (int j = 0; j < p.k; ++j) wt[t * p.k + j] /= chosen;
  }
}

void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& idx, const Tensor& weights, int first_expert, Tensor& out) {
  detail::require_host("moe_experts",
                       {&x, &w_gate, &w_up, &w_down, &idx.tensor(), &weights, &out});
  const int64_t E = detail::check_moe_experts(x, w_gate, w_up, w_down, idx, weights, out);
  const int64_t T = x.dim(0), F = w_gate.dim(1), H = w_gate.dim(2);
  const auto ids = detail::host_span("moe_experts", "ids", idx);
  const int64_t k = T == 0 ? 0 : static_cast<int64_t>(ids.size()) / T;
  const float* xs = x.data_as<float>();
  const float* wt = weights.data_as<float>();
  float* o = out.data_as<float>();
  std::vector<float> row(static_cast<size_t>(std::max(F, H))), act(static_cast<size_t>(F));
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = xs + t * H;
    for (int64_t c = 0; c < H; ++c) o[t * H + c] = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = int64_t{ids[static_cast<size_t>(t * k + j)]} - first_expert;
      if (e < 0 || e >= E) continue;  // held by another rank
      for (int64_t f = 0; f < F; ++f) {
        float g = 0.0f, u = 0.0f;
        dequantize_row(w_gate.dtype(), w_gate.row_ptr(e * F + f), row.data(), H);
        for (int64_t c = 0; c < H; ++c) g += row[c] * xt[c];
        dequantize_row(w_up.dtype(), w_up.row_ptr(e * F + f), row.data(), H);
        for (int64_t c = 0; c < H; ++c) u += row[c] * xt[c];
        act[f] = g / (1.0f + std::exp(-g)) * u;
      }
      const float w = wt[t * k + j];
      for (int64_t c = 0; c < H; ++c) {
        dequantize_row(w_down.dtype(), w_down.row_ptr(e * H + c), row.data(), F);
        float d = 0.0f;
        for (int64_t f = 0; f < F; ++f) d += row[f] * act[f];
        o[t * H + c] += w * d;
      }
    }
  }
}

}  // namespace tessera::ops::ref
