// The layout arithmetic of the planner; the model of it is written out in planner.h.
#include "tessera/planner/planner.h"

#include <algorithm>
#include <cmath>

#include "tessera/core/error.h"

namespace tessera::planner {
namespace {

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
// `bytes` of a tensor of `whole` rows, of which a rank holds `part`: rounded up.
uint64_t shard(uint64_t bytes, uint64_t part, uint64_t whole) {
  return ceil_div(bytes * part, whole);
}

struct StageFigures {
  int layers = 0;
  uint64_t weights = 0, kv = 0, act = 0, kv_per_token = 0, experts = 0;
  uint64_t total() const { return weights + kv + act; }
};

}  // namespace

double a2a_remote_ranks(int num_experts, int k, int ep) {
  if (ep <= 1 || num_experts <= 0 || k <= 0) return 0.0;
  // C(N - N/E, k) / C(N, k): all k choices avoid one given rank's N/E experts.
  const int n = num_experts, avoid = num_experts - num_experts / ep;
  double none = 1.0;
  for (int i = 0; i < k; ++i)
    none *= avoid - i > 0 ? static_cast<double>(avoid - i) / (n - i) : 0.0;
  return (ep - 1) * (1.0 - none);
}

void PlanParams::validate() const {
  auto positive = [](const char* field, double v) {
    if (!(v > 0)) fail(ErrorCode::kInvalidArgument, "plan: ", field, " must be positive, got ", v);
  };
  positive("gpus", gpus);
  positive("gpu memory", gpu_memory_gb);
  positive("context", context);
  positive("batch", batch);
  positive("max batched tokens", max_batched_tokens);
  positive("kv bits", kv_bits);
  positive("activation bits", act_bits);
  if (interconnect_gbps < 0)
    fail(ErrorCode::kInvalidArgument, "plan: interconnect bandwidth must be >= 0, got ",
         interconnect_gbps);
  if (interconnect_gbps > 0) {
    positive("gpu TFLOP/s", gpu_tflops);
    positive("gpu memory bandwidth", gpu_mem_bw_gbs);
    if (!(latency_us >= 0))
      fail(ErrorCode::kInvalidArgument, "plan: latency must be >= 0 us, got ", latency_us);
    if (prompt_tokens < 0)
      fail(ErrorCode::kInvalidArgument, "plan: prompt tokens must be >= 0, got ", prompt_tokens);
  }
  if (gpus_per_node < 0)
    fail(ErrorCode::kInvalidArgument, "plan: gpus per node must be >= 0, got ", gpus_per_node);
  if (!(gpu_memory_utilization > 0 && gpu_memory_utilization <= 1))
    fail(ErrorCode::kInvalidArgument, "plan: gpu memory utilization must be in (0, 1], got ",
         gpu_memory_utilization);
}

int PlanParams::node_size() const { return gpus_per_node > 0 ? gpus_per_node : std::min(gpus, 8); }

uint64_t PlanParams::usable_bytes() const {
  return static_cast<uint64_t>(std::floor(gpu_memory_gb * 1e9 * gpu_memory_utilization));
}

std::optional<std::string> layout_problem(const model::ModelConfig& c, const PlanParams& p, int t,
                                          int pp, int e) {
  using detail::concat;
  if (t < 1 || pp < 1 || e < 1 || t * e * pp != p.gpus)
    return e == 1 ? concat("T x P must use exactly the ", p.gpus, " GPUs")
                  : concat("T x E x P must use exactly the ", p.gpus, " GPUs");
  if (c.num_heads % t != 0) return concat("T must divide the ", c.num_heads, " attention heads");
  if (c.num_kv_heads % t != 0 && t % c.num_kv_heads != 0)
    return concat("T must divide the ", c.num_kv_heads, " KV heads or be a multiple of them");
  if (t > p.node_size())
    return concat("tensor parallelism would cross nodes (T=", t, " > ", p.node_size(),
                  " GPUs per node)");
  if (pp > c.num_layers) return concat("more stages than the ", c.num_layers, " layers");
  if (c.is_moe() &&
      (c.expert_intermediate_size % t != 0 || c.shared_expert_intermediate_size % t != 0))
    return concat("T must divide the experts' width ", c.expert_intermediate_size,
                  c.shared_expert_intermediate_size
                      ? concat(" and the shared expert's ", c.shared_expert_intermediate_size)
                      : "");
  if (e > 1) {
    if (!c.is_moe()) return concat("expert parallelism needs a mixture-of-experts model");
    if (c.num_experts % e != 0) return concat("E must divide the ", c.num_experts, " experts");
    if (e * t > p.node_size())
      return concat("expert parallelism would cross nodes (E=", e, t > 1 ? concat(" x T=", t) : "",
                    " > ", p.node_size(), " GPUs per node)");
  }
  return std::nullopt;
}

Layout evaluate(const ModelSpec& m, const PlanParams& p, int t, int pp, int e) {
  const model::ModelConfig& c = m.config;
  const WeightInventory& w = m.weights;
  const uint64_t act = p.act_bits / 8 > 0 ? p.act_bits / 8 : 1;
  const uint64_t h = c.hidden_size, vocab = c.vocab_size, inter = c.intermediate_size;
  const uint64_t kvr = c.num_kv_heads >= t ? c.num_kv_heads / t : 1;
  const uint64_t vocab_rows = ceil_div(vocab, t), inter_rows = ceil_div(inter, t);
  const bool tied = w.lm_head == 0;

  // Activations of one layer at a prefill chunk; the logits are added on the last stage.
  const uint64_t chunk = std::min<uint64_t>(p.max_batched_tokens, uint64_t(p.context) * p.batch);
  const uint64_t attn_scratch = chunk * (2 * c.q_dim() / t + 2 * kvr * c.head_dim) * act;
  // A MoE layer: the k routed experts' gate and up per token (all of them on this rank at worst),
  // the shared expert's, and the fp32 router logits.
  const uint64_t ne = c.num_experts, ei = c.expert_intermediate_size;
  const uint64_t ei_rows = ne ? ceil_div(ei, t) : 0;
  const uint64_t experts_per_rank = ne ? ceil_div(ne, e) : 0;
  const uint64_t mlp_scratch = c.is_moe()
                                   ? chunk *
                                             (2 * c.num_experts_used * ei_rows +
                                              2 * ceil_div(c.shared_expert_intermediate_size, t)) *
                                             act +
                                         chunk * ne * 4
                                   : chunk * 2 * inter_rows * act;
  const uint64_t layer_act = 2 * chunk * h * act + std::max(attn_scratch, mlp_scratch);
  const uint64_t logits = uint64_t(p.batch) * vocab_rows * 4;

  const int n_layers = static_cast<int>(w.layers.size());
  StageFigures worst;
  std::vector<StageLoad> loads;
  int first = 0;
  for (int s = 0; s < pp; ++s) {
    StageFigures st;
    st.layers = n_layers / pp + (s < n_layers % pp ? 1 : 0);
    for (int i = first; i < first + st.layers; ++i) {
      const LayerWeights& l = w.layers[i];
      // A MoE model's mlp bucket is its shared expert, split like the MLP it is.
      const uint64_t mlp_width = c.is_moe() ? c.shared_expert_intermediate_size : inter;
      st.weights += ceil_div(l.attn_qo, t) + shard(l.attn_kv, kvr, c.num_kv_heads) +
                    (mlp_width ? shard(l.mlp, ceil_div(mlp_width, t), mlp_width) : l.mlp) +
                    l.replicated;
      if (ne) {
        const uint64_t mine = shard(shard(l.experts, experts_per_rank, ne), ei_rows, ei);
        st.weights += mine;
        st.experts += mine;
      }
    }
    first += st.layers;
    const bool is_first = s == 0, is_last = s == pp - 1;
    if (is_first || (is_last && tied)) st.weights += shard(w.embedding, vocab_rows, vocab);
    if (is_last) st.weights += shard(w.lm_head, vocab_rows, vocab) + w.final_other;
    st.kv_per_token = 2 * uint64_t(st.layers) * kvr * c.head_dim * p.kv_bits / 8;
    st.kv = st.kv_per_token * p.context * p.batch;
    st.act = layer_act + (is_last ? logits : 0);
    if (s == 0 || st.total() > worst.total()) worst = st;
    loads.push_back({.layers = st.layers,
                     .weights = st.weights,
                     .expert_weights = st.experts,
                     .kv_per_token = st.kv_per_token,
                     .first = is_first,
                     .last = is_last});
  }

  Layout l{.tensor = t,
           .pipeline = pp,
           .expert = e,
           .experts_per_rank = static_cast<int>(experts_per_rank),
           .layers_per_stage = worst.layers,
           .kv_heads_per_rank = static_cast<int>(kvr)};
  l.weight_bytes_per_gpu = worst.weights;
  l.kv_bytes_per_gpu = worst.kv;
  l.activation_bytes_per_gpu = worst.act;
  l.total_bytes_per_gpu = worst.total();
  l.kv_bytes_per_token = worst.kv_per_token;
  const uint64_t usable = p.usable_bytes();
  l.spare_bytes = static_cast<int64_t>(usable) - static_cast<int64_t>(l.total_bytes_per_gpu);
  const uint64_t fixed = worst.weights + worst.act;
  l.kv_tokens = usable > fixed && worst.kv_per_token ? (usable - fixed) / worst.kv_per_token : 0;
  // Data-parallel attention: each EP rank holds only its own sequences' KV, in blocks of its own.
  if (e > 1 && p.expert_data_attention) l.kv_tokens *= static_cast<uint64_t>(e);
  l.fits = l.total_bytes_per_gpu <= usable;

  if (t > 1) {
    // Ring all-reduce: reduce-scatter then all-gather, each T-1 chunks of ceil(m / T).
    const uint64_t per_allreduce = 2 * uint64_t(t - 1) * ceil_div(h * act, t);
    l.allreduces_per_token = 2 * c.num_layers + 1;
    l.comm_tp_bytes_per_token = l.allreduces_per_token * per_allreduce +
                                uint64_t(t - 1) * vocab_rows * 4;  // logits all-gather (fp32)
  }
  if (e > 1) {
    // Replicated attention: one all-reduce of the partial expert outputs per MoE layer.
    l.ep_allreduce_bytes_per_token =
        uint64_t(c.num_layers) * 2 * uint64_t(e - 1) * ceil_div(h * act, e);
    // Data-parallel attention: each token's row to the other ranks holding its experts and back.
    const double row = 2.0 * static_cast<double>(h * act) + 8.0 * c.num_experts_used;
    // Every TP rank of an EP group exchanges the same rows with its peers: T copies.
    l.a2a_bytes_per_token = static_cast<uint64_t>(
        std::ceil(c.num_layers * a2a_remote_ranks(c.num_experts, c.num_experts_used, e) * row * t));
    if (p.expert_data_attention) {
      l.comm_ep_bytes_per_token = l.a2a_bytes_per_token;
    } else {
      l.allreduces_per_token += c.num_layers;
      l.comm_ep_bytes_per_token = l.ep_allreduce_bytes_per_token;
    }
  }
  l.comm_pp_bytes_per_token = uint64_t(pp - 1) * h * act;
  l.comm_bytes_per_token =
      l.comm_tp_bytes_per_token + l.comm_ep_bytes_per_token + l.comm_pp_bytes_per_token;
  if (p.interconnect_gbps > 0) l.time = estimate_time(m, p, t, e, loads);
  return l;
}

namespace {

std::string gb(uint64_t bytes) { return format_bytes(static_cast<double>(bytes)); }

// "TP=8 PP=1", with " EP=E" for an expert-parallel layout.
std::string name(int t, int pp, int e) {
  return detail::concat("TP=", t, e > 1 ? detail::concat(" EP=", e) : "", " PP=", pp);
}
std::string name(const Layout& l) { return name(l.tensor, l.pipeline, l.expert); }

std::string why_recommended(const Plan& plan, const Layout& r) {
  const PlanParams& p = plan.params;
  using detail::concat;
  std::string s = concat(
      name(r), ": fits in ", p.gpu_memory_gb, " GB per GPU (", gb(r.total_bytes_per_gpu), " of ",
      gb(p.usable_bytes()), " usable at ", p.gpu_memory_utilization * 100, "%) with ",
      gb(r.kv_bytes_per_gpu), " of KV cache for ", p.batch, " x ", p.context, " tokens and ",
      gb(r.spare_bytes), " to spare (room for ", r.kv_tokens, " tokens of KV cache in all)");
  if (r.pipeline == 1) {
    s += "; no pipeline bubbles";
  } else {
    std::string ruled_out;
    for (const Layout& l : plan.layouts)
      if (l.pipeline < r.pipeline)
        ruled_out += concat(ruled_out.empty() ? "" : "; ", name(l), " needs ",
                            gb(l.total_bytes_per_gpu), " per GPU");
    for (const Rejected& x : plan.rejected)
      if (x.pipeline < r.pipeline)
        ruled_out += concat(ruled_out.empty() ? "" : "; ", name(x.tensor, x.pipeline, x.expert),
                            ": ", x.reason);
    s += concat("; ", r.pipeline, " pipeline stages because fewer do not work (", ruled_out,
                "), and only the hidden state (", r.comm_pp_bytes_per_token / (r.pipeline - 1),
                " bytes per token) crosses each stage boundary");
  }
  // The alternatives at the same P that also fit, and what the pick trades against them.
  for (const Layout& l : plan.layouts) {
    if (l.pipeline != r.pipeline || !l.fits || &l == &r || l.expert == r.expert) continue;
    s += concat("; sends ", gb(r.comm_bytes_per_token), " per token against ",
                gb(l.comm_bytes_per_token), " for ", name(l));
    if (r.expert > 1 && l.expert == 1)
      s += p.expert_data_attention
               ? concat(
                     " (each token only to its experts' ranks and back, no all-reduce; each EP "
                     "rank holds its own sequences' KV cache: room for ",
                     r.kv_tokens, " tokens in all against ", l.kv_tokens, ")")
               : concat(
                     " (one all-reduce per MoE layer instead of two), but every EP rank holds "
                     "the whole KV cache (room for ",
                     r.kv_tokens, " tokens against ", l.kv_tokens, ")");
  }
  if (r.tensor > 1) s += concat("; TP stays within one ", p.node_size(), "-GPU node");
  if (r.expert > 1)
    s += concat("; EP stays within one ", p.node_size(), "-GPU node, ", r.experts_per_rank,
                r.experts_per_rank == 1 ? " expert" : " experts", " per GPU");
  return s;
}

}  // namespace

Plan make_plan(const ModelSpec& m, const PlanParams& p) {
  p.validate();
  Plan plan{.params = p};
  for (int pp = 1; pp <= p.gpus; ++pp) {
    if (p.gpus % pp != 0) continue;
    const int rest = p.gpus / pp;
    // A dense model has one layout per P; a MoE model one per way of splitting the rest into E x T.
    for (int e = 1; e <= (m.config.is_moe() ? rest : 1); ++e) {
      if (rest % e != 0) continue;
      const int t = rest / e;
      if (auto problem = layout_problem(m.config, p, t, pp, e)) {
        plan.rejected.push_back({.tensor = t, .pipeline = pp, .expert = e, .reason = *problem});
        continue;
      }
      plan.layouts.push_back(evaluate(m, p, t, pp, e));
    }
  }
  // Layouts are by increasing P: the first P with a layout that fits decides; within it the one
  // that sends the fewest bytes per token.
  const Layout* pick = nullptr;
  for (const Layout& l : plan.layouts) {
    if (!l.fits) continue;
    if (pick && l.pipeline > pick->pipeline) break;
    if (!pick || l.comm_bytes_per_token < pick->comm_bytes_per_token) pick = &l;
  }
  if (pick) {
    plan.recommended = *pick;
    plan.reason = why_recommended(plan, *pick);
    return plan;
  }
  if (plan.layouts.empty()) {
    plan.reason = detail::concat("no layout of ", p.gpus, " GPUs is allowed for this model");
    return plan;
  }
  const Layout& best = *std::min_element(plan.layouts.begin(), plan.layouts.end(),
                                         [](const Layout& a, const Layout& b) {
                                           return a.total_bytes_per_gpu < b.total_bytes_per_gpu;
                                         });
  plan.recommended = best;
  plan.reason =
      detail::concat("nothing fits: the smallest layout, TP=", best.tensor, " PP=", best.pipeline,
                     ", needs ", gb(best.total_bytes_per_gpu), " per GPU (",
                     gb(best.weight_bytes_per_gpu), " weights, ", gb(best.kv_bytes_per_gpu),
                     " KV cache), ", gb(-best.spare_bytes), " over the ", gb(p.usable_bytes()),
                     " usable; use more GPUs, a shorter --context or smaller --batch, or "
                     "a quantised model");
  return plan;
}

}  // namespace tessera::planner
