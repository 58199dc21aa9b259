// MoeLayer: loading and running one layer's Mixture-of-Experts FFN through the ops interface.
#include "tessera/model/moe.h"

#include <string>

#include "tessera/core/error.h"
#include "tessera/model/shard.h"
#include "tessera/ops/ops.h"

namespace tessera::model {
namespace {

Tensor get(const WeightSource& w, const std::string& name, const Shape& shape) {
  Tensor t = w.get(name);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (t.numel() != n || t.dim(-1) != shape.back())
    fail(ErrorCode::kInvalidArgument, "weight ", name, " has shape ", shape_str(t.shape()),
         ", expected ", shape_str(shape));
  return t.shape() == shape ? t : t.view(shape);
}

}  // namespace

MoeLayer MoeLayer::load(const WeightSource& w, const ModelConfig& c, int layer, ExpertRange held,
                        bool shared, int tp_rank, int tp_size) {
  if (held.first < 0 || held.count < 1 || held.first + held.count > c.num_experts)
    fail(ErrorCode::kInvalidArgument, "experts [", held.first, ", ", held.first + held.count,
         ") outside the model's ", c.num_experts);
  const std::string p = "blk." + std::to_string(layer) + ".";
  const int64_t E = c.num_experts, H = c.hidden_size, F = c.expert_intermediate_size;
  MoeLayer m;
  m.held = held;
  m.router = get(w, p + "ffn_gate_inp.weight", {E, H});
  auto experts = [&](const char* name, int64_t rows, int64_t cols) {
    const Tensor all = get(w, p + name, {E, rows, cols});
    return held.count == E ? all : all.slice(held.first, held.first + held.count);
  };
  // Tensor parallelism: this rank's slice of an expert's width `width` (gate/up rows, down
  // columns); the whole tensor when T = 1.
  auto width_rows = [&](const std::string& name, const Tensor& t, int64_t width) {
    const int64_t n = width / tp_size;
    return tp_size == 1 ? t : shard_expert_rows(t, tp_rank * n, (tp_rank + 1) * n, name);
  };
  auto width_cols = [&](const std::string& name, const Tensor& t, int64_t width) {
    const int64_t n = width / tp_size;
    return tp_size == 1 ? t : shard_expert_cols(t, tp_rank * n, (tp_rank + 1) * n, name);
  };
  m.gate_exps = width_rows(p + "ffn_gate_exps", experts("ffn_gate_exps.weight", F, H), F);
  m.up_exps = width_rows(p + "ffn_up_exps", experts("ffn_up_exps.weight", F, H), F);
  m.down_exps = width_cols(p + "ffn_down_exps", experts("ffn_down_exps.weight", H, F), F);
  if (shared && c.shared_expert_intermediate_size > 0) {
    const int64_t S = c.shared_expert_intermediate_size;
    m.shexp_gate = get(w, p + "ffn_gate_inp_shexp.weight", {1, H});
    m.gate_shexp =
        width_rows(p + "ffn_gate_shexp", get(w, p + "ffn_gate_shexp.weight", {1, S, H}), S);
    m.up_shexp = width_rows(p + "ffn_up_shexp", get(w, p + "ffn_up_shexp.weight", {1, S, H}), S);
    m.down_shexp =
        width_cols(p + "ffn_down_shexp", get(w, p + "ffn_down_shexp.weight", {1, H, S}), S);
  }
  return m;
}

void MoeLayer::forward(const ModelConfig& c, const Tensor& normed, Tensor& out,
                       const std::shared_ptr<Allocator>& alloc, std::span<int64_t> counts) const {
  const int64_t T = normed.dim(0), k = c.num_experts_used;
  auto act = [&](Shape s, DType d = DType::kF32) { return Tensor::empty(std::move(s), d, alloc); };
  Tensor logits = act({T, c.num_experts});
  ops::matmul(normed, router, Tensor(), logits);
  Tensor ids = act({T, k}, DType::kI32), weights = act({T, k});
  ops::moe_route(logits, {.k = static_cast<int>(k), .renormalize = c.norm_topk_prob}, ids, weights);
  ops::moe_experts(normed, gate_exps, up_exps, down_exps, ids, weights, held.first, out);
  if (!counts.empty()) {
    const Tensor host = to_host(ids);
    for (int64_t i = 0; i < host.numel(); ++i) {
      const int32_t e = host.data_as<int32_t>()[i];
      if (e >= held.first && e < held.first + held.count) ++counts[static_cast<size_t>(e)];
    }
  }
  add_shared(c, normed, out, alloc);
}

void MoeLayer::add_shared(const ModelConfig& c, const Tensor& normed, Tensor& out,
                          const std::shared_ptr<Allocator>& alloc) const {
  if (!gate_shexp.defined()) return;
  const int64_t T = normed.dim(0);
  auto act = [&](Shape s, DType d = DType::kF32) { return Tensor::empty(std::move(s), d, alloc); };
  // The shared expert: every token, weight sigmoid(shexp_gate . x).
  Tensor g = act({T, 1});
  ops::matmul(normed, shexp_gate, Tensor(), g);
  Tensor sid = act({T, 1}, DType::kI32), sw = act({T, 1});
  ops::moe_route(g, {.k = 1, .router = ops::MoeRouter::kSigmoid}, sid, sw);
  Tensor shared = act({T, c.hidden_size});
  ops::moe_experts(normed, gate_shexp, up_shexp, down_shexp, sid, sw, 0, shared);
  ops::add(out, shared);
}

}  // namespace tessera::model
