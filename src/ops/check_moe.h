// Private shape checks of the Mixture-of-Experts ops (moe_route, moe_experts), shared by the
// dispatcher and the host implementations like check.h: shapes and dtypes only, any device; and
// the grouping of (token, choice) pairs by expert that the CPU and CUDA moe_experts share.
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "check.h"

namespace tessera::ops::detail {

inline void check_moe_route(const Tensor& logits, const MoeRouteParams& p, const Tensor& ids,
                            const Tensor& weights) {
  check_f32("moe_route", "logits", logits);
  check_f32("moe_route", "weights", weights);
  check_dense("moe_route", "ids", ids);
  if (ids.dtype() != DType::kI32)
    fail(ErrorCode::kInvalidArgument, "moe_route: ids must be i32, got ", ids.str());
  const int64_t T = rows_of(logits), E = cols_of(logits);
  if (p.k < 1 || p.k > E)
    fail(ErrorCode::kInvalidArgument, "moe_route: k = ", p.k, " for ", E, " experts");
  if (p.router == MoeRouter::kSigmoid && (p.k != 1 || E != 1))
    fail(ErrorCode::kInvalidArgument, "moe_route: the sigmoid gate takes one logit per token, got ",
         logits.str(), " k = ", p.k);
  if (ids.numel() != T * p.k || weights.numel() != T * p.k)
    fail(ErrorCode::kInvalidArgument, "moe_route: logits ", logits.str(), " k = ", p.k, " -> ids ",
         ids.str(), " weights ", weights.str());
}

// Returns the number of experts held (E_local).
inline int64_t check_moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                                 const Tensor& w_down, const Indices& ids, const Tensor& weights,
                                 const Tensor& out) {
  const char* op = "moe_experts";
  check_f32(op, "x", x);
  check_f32(op, "out", out);
  check_f32(op, "weights", weights);
  check_dense(op, "w_gate", w_gate);
  check_dense(op, "w_up", w_up);
  check_dense(op, "w_down", w_down);
  check_index(op, "ids", ids);
  // Each of the three may have its own weight dtype (GGUF files often quantize down differently).
  if (w_gate.ndim() != 3 || w_up.shape() != w_gate.shape() || w_down.ndim() != 3)
    fail(ErrorCode::kInvalidArgument, op, ": experts must be [E, F, H] gate/up and [E, H, F] ",
         "down, got ", w_gate.str(), " ", w_up.str(), " ", w_down.str());
  const int64_t E = w_gate.dim(0), F = w_gate.dim(1), H = w_gate.dim(2);
  if (w_down.shape() != Shape{E, H, F} || x.ndim() != 2 || x.dim(1) != H ||
      out.shape() != x.shape())
    fail(ErrorCode::kInvalidArgument, op, ": x ", x.str(), " experts ", w_gate.str(), " / ",
         w_down.str(), " out ", out.str());
  const int64_t T = x.dim(0);
  if (ids.size() != weights.numel() || (T == 0 ? ids.size() != 0 : ids.size() % T != 0))
    fail(ErrorCode::kInvalidArgument, op, ": ids ", ids.tensor().str(), " and weights ",
         weights.str(), " are not [", T, ", k]");
  return E;
}

// The (token, choice) pairs of `ids` ([T, k] flattened) grouped by held expert e in [0, E) (id
// first_expert + e), token order kept within an expert (a counting sort): expert e's pairs are
// pair[start[e] .. start[e + 1]), each the flat index t * k + j; choices outside the held range
// are dropped. busiest: the most pairs of any one expert.
struct ExpertGroups {
  std::vector<int64_t> start;  // E + 1
  std::vector<int64_t> pair;
  int64_t busiest = 0;
};
inline ExpertGroups group_by_expert(std::span<const int32_t> ids, int first_expert, int64_t E) {
  ExpertGroups g;
  g.start.assign(static_cast<size_t>(E + 1), 0);
  for (int32_t id : ids) {
    const int64_t e = int64_t{id} - first_expert;
    if (e >= 0 && e < E) ++g.start[static_cast<size_t>(e + 1)];
  }
  for (int64_t e = 0; e < E; ++e) {
    g.busiest = std::max(g.busiest, g.start[static_cast<size_t>(e + 1)]);
    g.start[static_cast<size_t>(e + 1)] += g.start[static_cast<size_t>(e)];
  }
  g.pair.resize(static_cast<size_t>(g.start[static_cast<size_t>(E)]));
  std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t e = int64_t{ids[i]} - first_expert;
    if (e >= 0 && e < E) g.pair[static_cast<size_t>(fill[static_cast<size_t>(e)]++)] = int64_t(i);
  }
  return g;
}

}  // namespace tessera::ops::detail
