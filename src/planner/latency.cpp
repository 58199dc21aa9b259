// The planner's time model (planner.h, "Time"): a roofline for each stage's compute and an
// alpha-beta model of its collectives, for one decode step and one prompt's prefill.
#include <algorithm>
#include <cmath>

#include "tessera/planner/planner.h"

namespace tessera::planner {
namespace {

struct Link {
  double alpha = 0;  // seconds per message
  double beta = 0;   // bytes per second
  // Ring all-reduce of m bytes over n ranks: a reduce-scatter and an all-gather, n - 1 steps
  // each, every step one message of ceil(m / n) bytes.
  double all_reduce(int n, double m) const {
    return n > 1 ? 2.0 * (n - 1) * (alpha + std::ceil(m / n) / beta) : 0.0;
  }
  // Ring all-gather: n - 1 steps of each rank's share.
  double all_gather(int n, double share) const {
    return n > 1 ? (n - 1) * (alpha + share / beta) : 0.0;
  }
  double send(double m) const { return alpha + m / beta; }
  // Pairwise all-to-all in which this rank sends m bytes in all: one message per peer.
  double all_to_all(int n, double m) const { return n > 1 ? (n - 1) * alpha + m / beta : 0.0; }
};

}  // namespace

Layout::Timing estimate_time(const ModelSpec& m, const PlanParams& p, int t, int e,
                             const std::vector<StageLoad>& stages) {
  const model::ModelConfig& c = m.config;
  const Link link{.alpha = p.latency_us * 1e-6, .beta = p.interconnect_gbps * 1e9 / 8.0};
  const double bw = p.gpu_mem_bw_gbs * 1e9, peak = p.gpu_tflops * 1e12;
  const double act = std::max(1, p.act_bits / 8);
  const double h = static_cast<double>(c.hidden_size);
  const double vocab_share = std::ceil(static_cast<double>(c.vocab_size) / t) * 4.0;
  const double q_share = static_cast<double>(c.q_dim()) / t;
  const double total_bytes = static_cast<double>(m.weights.total());
  const double params_per_byte =
      total_bytes > 0 ? static_cast<double>(parameter_count(c)) / total_bytes : 0.0;
  // Routed experts: each token uses k of N, so k / N of their parameters are active per token,
  // and a batch of b tokens touches the expected share 1 - (1 - k/N)^b of their bytes.
  const double k_over_n = c.is_moe() ? static_cast<double>(c.num_experts_used) / c.num_experts : 1;
  const double b = p.batch, ctx = p.context;
  const double n = p.prompt_tokens > 0 ? p.prompt_tokens : p.max_batched_tokens;
  const double touched = c.is_moe() ? 1.0 - std::pow(1.0 - k_over_n, b) : 1.0;

  // Expert parallelism's MoE layer: data-parallel attention sends a count exchange (an all-gather
  // of E counts), then each rank's tokens to their experts' ranks and the outputs back (rows of
  // hidden floats, plus the routing on the way out); replicated attention one all-reduce.
  const double row = h * act + 8.0 * (c.is_moe() ? c.num_experts_used : 0);
  const double remote = c.is_moe() ? a2a_remote_ranks(c.num_experts, c.num_experts_used, e) : 0;
  auto moe_comm = [&](double tokens_on_rank) {
    if (e <= 1) return 0.0;
    if (!p.expert_data_attention) return link.all_reduce(e, tokens_on_rank * h * act);
    return link.all_gather(e, 4.0 * e) + link.all_to_all(e, tokens_on_rank * remote * row) +
           link.all_to_all(e, tokens_on_rank * remote * h * act);
  };
  // Decode's batch spreads over the EP ranks' attention; one prompt's prefill stays on one.
  const double dec_tokens = p.expert_data_attention && e > 1 ? std::ceil(b / e) : b;
  Layout::Timing r;
  double dec_overlap = 0, pre_overlap = 0;
  for (const StageLoad& s : stages) {
    const double dense = static_cast<double>(s.weights - s.expert_weights);
    const double experts = static_cast<double>(s.expert_weights);
    const double active_params = (dense + experts * k_over_n) * params_per_byte;
    const double layers = s.layers;
    const double moe_layers = c.is_moe() ? layers : 0;
    const double tp_allreduces = 2.0 * layers + (s.first ? 1 : 0);

    const double dec_bytes =
        dense + experts * touched + b * ctx * static_cast<double>(s.kv_per_token);
    const double dec_flops = 2.0 * active_params * b + 4.0 * b * ctx * q_share * layers;
    const double dec_compute = dec_bytes / bw + dec_flops / peak;
    const double dec_comm = tp_allreduces * link.all_reduce(t, b * h * act) +
                            (s.last ? link.all_gather(t, b * vocab_share) : 0.0) +
                            moe_layers * moe_comm(dec_tokens);
    r.decode_compute_ms += dec_compute * 1e3;
    r.decode_comm_ms += dec_comm * 1e3;
    dec_overlap += std::max(dec_compute, dec_comm);

    // Prefill: one prompt; only its last token's logits are gathered.
    const double pre_flops = 2.0 * active_params * n + 2.0 * n * n * q_share * layers;
    const double pre_compute = (dense + experts) / bw + pre_flops / peak;
    const double pre_comm = tp_allreduces * link.all_reduce(t, n * h * act) +
                            (s.last ? link.all_gather(t, vocab_share) : 0.0) +
                            moe_layers * moe_comm(n);
    r.prefill_compute_ms += pre_compute * 1e3;
    r.prefill_comm_ms += pre_comm * 1e3;
    pre_overlap += std::max(pre_compute, pre_comm);
  }
  const double hops = stages.empty() ? 0.0 : static_cast<double>(stages.size() - 1);
  const double dec_hops = hops * link.send(b * h * act), pre_hops = hops * link.send(n * h * act);
  r.decode_comm_ms += dec_hops * 1e3;
  r.prefill_comm_ms += pre_hops * 1e3;
  r.decode_ms = r.decode_compute_ms + r.decode_comm_ms;
  r.prefill_ms = r.prefill_compute_ms + r.prefill_comm_ms;
  r.decode_overlap_ms = (dec_overlap + dec_hops) * 1e3;
  r.prefill_overlap_ms = (pre_overlap + pre_hops) * 1e3;
  return r;
}

}  // namespace tessera::planner
