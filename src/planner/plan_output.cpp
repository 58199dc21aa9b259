// A Plan for people (a table and the recommendation) and for programs (JSON).
#include <cstdio>
#include <sstream>
#include <string>

#include "tessera/planner/planner.h"

#if TESSERA_HAVE_JSON
#include <nlohmann/json.hpp>
#endif

namespace tessera::planner {

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  double v = bytes < 0 ? -bytes : bytes;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  char buf[48];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%s%.0f B", bytes < 0 ? "-" : "", v);
  else
    std::snprintf(buf, sizeof buf, "%s%.2f %s", bytes < 0 ? "-" : "", v, units[u]);
  return buf;
}

std::string format_plan(const ModelSpec& m, const Plan& plan) {
  const model::ModelConfig& c = m.config;
  const PlanParams& p = plan.params;
  std::ostringstream os;
  char line[256];
  os << "model: " << (c.name.empty() ? m.source : c.name) << " (" << c.architecture << ", "
     << c.num_layers << " layers, hidden " << c.hidden_size << ", " << c.num_heads << " heads / "
     << c.num_kv_heads << " KV heads, vocab " << c.vocab_size
     << (c.tied_embeddings ? ", tied embeddings" : "") << ")\n";
  if (c.is_moe())
    os << "experts: " << c.num_experts << " routed, " << c.num_experts_used << " per token, width "
       << c.expert_intermediate_size
       << (c.shared_expert_intermediate_size
               ? ", shared expert width " + std::to_string(c.shared_expert_intermediate_size)
               : std::string())
       << "\n";
  os << "weights: " << format_bytes(static_cast<double>(m.weights.total())) << " ("
     << m.weights_from << ")\n";
  os << "GPUs: " << p.gpus << " (" << p.node_size() << " per node), " << p.gpu_memory_gb
     << " GB each, " << format_bytes(static_cast<double>(p.usable_bytes())) << " usable at "
     << p.gpu_memory_utilization * 100 << "%\n";
  os << "load: context " << p.context << " x batch " << p.batch << ", KV cache " << p.kv_bits
     << "-bit, activations for a " << p.max_batched_tokens << "-token prefill chunk\n\n";

  // The EP column only for a MoE model, so a dense model's table reads as it always has.
  const bool moe = c.is_moe();
  std::snprintf(line, sizeof line, "%4s%s %4s %7s %12s %12s %12s %12s %12s %14s %5s\n", "TP",
                moe ? "   EP" : "", "PP", "layers", "weights/GPU", "KV/GPU", "act/GPU", "total/GPU",
                "KV tokens", "comm/token", "fits");
  os << line;
  for (const Layout& l : plan.layouts) {
    char ep[16] = "";
    if (moe) std::snprintf(ep, sizeof ep, " %4d", l.expert);
    std::snprintf(line, sizeof line, "%4d%s %4d %7d %12s %12s %12s %12s %12llu %14s %5s\n",
                  l.tensor, ep, l.pipeline, l.layers_per_stage,
                  format_bytes(static_cast<double>(l.weight_bytes_per_gpu)).c_str(),
                  format_bytes(static_cast<double>(l.kv_bytes_per_gpu)).c_str(),
                  format_bytes(static_cast<double>(l.activation_bytes_per_gpu)).c_str(),
                  format_bytes(static_cast<double>(l.total_bytes_per_gpu)).c_str(),
                  static_cast<unsigned long long>(l.kv_tokens),
                  format_bytes(static_cast<double>(l.comm_bytes_per_token)).c_str(),
                  l.fits ? "yes" : "no");
    os << line;
  }
  if (plan.layouts.empty()) os << "  (no allowed layout)\n";
  os << "\ncomm/token: bytes one GPU sends per generated token of one sequence: TP ring\n"
        "  all-reduces and the logits all-gather, plus PP stage boundaries on the token's path\n";
  if (moe) {
    const bool data = p.expert_data_attention;
    os << (data
               ? "  and EP's all-to-all dispatch and combine (data-parallel attention), the bytes\n"
                 "  the group sends for the token both ways; replicated attention's all-reduce\n"
                 "  would send instead:"
               : "  and EP's all-reduce of partial expert outputs, one per MoE layer; an\n"
                 "  all-to-all dispatch+combine (data-parallel attention) would send instead:");
    for (const Layout& l : plan.layouts)
      if (l.expert > 1)
        os << " EP=" << l.expert << " "
           << format_bytes(static_cast<double>(data ? l.ep_allreduce_bytes_per_token
                                                    : l.a2a_bytes_per_token));
    os << "\n";
  }
  if (!plan.layouts.empty() && plan.layouts.front().time) {
    const int n = p.prompt_tokens > 0 ? p.prompt_tokens : p.max_batched_tokens;
    os << "\ntime: " << p.gpu_tflops << " TFLOP/s and " << p.gpu_mem_bw_gbs
       << " GB/s per GPU, link " << p.interconnect_gbps << " Gbit/s (" << p.interconnect_gbps / 8
       << " GB/s) with " << p.latency_us << " us per message\n";
    std::snprintf(line, sizeof line, "%4s%s %4s %12s %10s %10s %12s %12s %10s %12s\n", "TP",
                  moe ? "   EP" : "", "PP", "decode ms", "compute", "comm", "overlapped",
                  "prefill ms", "comm", "overlapped");
    os << line;
    for (const Layout& l : plan.layouts) {
      char ep[16] = "";
      if (moe) std::snprintf(ep, sizeof ep, " %4d", l.expert);
      const Layout::Timing& tm = *l.time;
      std::snprintf(line, sizeof line,
                    "%4d%s %4d %12.3f %10.3f %10.3f %12.3f %12.2f %10.2f %12.2f\n", l.tensor, ep,
                    l.pipeline, tm.decode_ms, tm.decode_compute_ms, tm.decode_comm_ms,
                    tm.decode_overlap_ms, tm.prefill_ms, tm.prefill_comm_ms, tm.prefill_overlap_ms);
      os << line;
    }
    os << "decode ms: one step of the batch of " << p.batch
       << " (each sequence's time per token); prefill ms: one prompt of " << n
       << " tokens;\n  overlapped: communication hidden behind compute where it can be (two "
          "micro-batches;\n  at batch 1 only the first figure applies); PP hops are never hidden\n";
  }
  for (const Rejected& r : plan.rejected)
    os << "not allowed: TP=" << r.tensor << (r.expert > 1 ? " EP=" + std::to_string(r.expert) : "")
       << " PP=" << r.pipeline << ": " << r.reason << "\n";
  os << "\n";
  if (plan.recommended && plan.recommended->fits)
    os << "recommended: TP=" << plan.recommended->tensor
       << (plan.recommended->expert > 1 ? " EP=" + std::to_string(plan.recommended->expert) : "")
       << " PP=" << plan.recommended->pipeline << "\n  " << plan.reason << "\n";
  else
    os << "no layout fits\n  " << plan.reason << "\n";
  return os.str();
}

#if TESSERA_HAVE_JSON
namespace {

nlohmann::ordered_json layout_json(const Layout& l) {
  return {
      {"tensor", l.tensor},
      {"pipeline", l.pipeline},
      {"expert", l.expert},
      {"experts_per_rank", l.experts_per_rank},
      {"weight_bytes_per_gpu", l.weight_bytes_per_gpu},
      {"kv_bytes_per_gpu", l.kv_bytes_per_gpu},
      {"activation_bytes_per_gpu", l.activation_bytes_per_gpu},
      {"total_bytes_per_gpu", l.total_bytes_per_gpu},
      {"spare_bytes_per_gpu", l.spare_bytes},
      {"kv_bytes_per_token", l.kv_bytes_per_token},
      {"kv_tokens", l.kv_tokens},
      {"layers_per_stage", l.layers_per_stage},
      {"kv_heads_per_rank", l.kv_heads_per_rank},
      {"allreduces_per_token", l.allreduces_per_token},
      {"comm_tp_bytes_per_token", l.comm_tp_bytes_per_token},
      {"comm_ep_bytes_per_token", l.comm_ep_bytes_per_token},
      {"a2a_bytes_per_token", l.a2a_bytes_per_token},
      {"ep_allreduce_bytes_per_token", l.ep_allreduce_bytes_per_token},
      {"comm_pp_bytes_per_token", l.comm_pp_bytes_per_token},
      {"comm_bytes_per_token", l.comm_bytes_per_token},
      {"fits", l.fits},
  };
}

nlohmann::ordered_json with_time(nlohmann::ordered_json j, const Layout& l) {
  if (l.time)
    j["time_ms"] = {{"decode", l.time->decode_ms},
                    {"decode_compute", l.time->decode_compute_ms},
                    {"decode_comm", l.time->decode_comm_ms},
                    {"decode_overlapped", l.time->decode_overlap_ms},
                    {"prefill", l.time->prefill_ms},
                    {"prefill_compute", l.time->prefill_compute_ms},
                    {"prefill_comm", l.time->prefill_comm_ms},
                    {"prefill_overlapped", l.time->prefill_overlap_ms}};
  return j;
}

}  // namespace

nlohmann::ordered_json plan_to_json(const ModelSpec& m, const Plan& plan) {
  const model::ModelConfig& c = m.config;
  const PlanParams& p = plan.params;
  nlohmann::ordered_json j;
  j["model"] = {
      {"source", m.source},
      {"name", c.name},
      {"architecture", c.architecture},
      {"num_layers", c.num_layers},
      {"hidden_size", c.hidden_size},
      {"num_heads", c.num_heads},
      {"num_kv_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"intermediate_size", c.intermediate_size},
      {"vocab_size", c.vocab_size},
      {"tied_embeddings", c.tied_embeddings},
      {"num_experts", c.num_experts},
      {"num_experts_used", c.num_experts_used},
      {"expert_intermediate_size", c.expert_intermediate_size},
      {"shared_expert_intermediate_size", c.shared_expert_intermediate_size},
      {"weight_bytes", m.weights.total()},
      {"weights_from", m.weights_from},
  };
  j["params"] = {
      {"gpus", p.gpus},
      {"gpus_per_node", p.node_size()},
      {"gpu_memory_bytes", static_cast<uint64_t>(p.gpu_memory_gb * 1e9)},
      {"gpu_memory_utilization", p.gpu_memory_utilization},
      {"usable_bytes_per_gpu", p.usable_bytes()},
      {"context", p.context},
      {"batch", p.batch},
      {"max_batched_tokens", p.max_batched_tokens},
      {"kv_bits", p.kv_bits},
  };
  if (p.interconnect_gbps > 0)
    j["params"]["time_model"] = {
        {"interconnect_gbps", p.interconnect_gbps},
        {"latency_us", p.latency_us},
        {"gpu_tflops", p.gpu_tflops},
        {"gpu_mem_bw_gbs", p.gpu_mem_bw_gbs},
        {"prompt_tokens", p.prompt_tokens > 0 ? p.prompt_tokens : p.max_batched_tokens}};
  j["layouts"] = nlohmann::ordered_json::array();
  for (const Layout& l : plan.layouts) j["layouts"].push_back(with_time(layout_json(l), l));
  j["rejected"] = nlohmann::ordered_json::array();
  for (const Rejected& r : plan.rejected)
    j["rejected"].push_back({{"tensor", r.tensor},
                             {"pipeline", r.pipeline},
                             {"expert", r.expert},
                             {"reason", r.reason}});
  if (plan.recommended) {
    j["recommended"] = with_time(layout_json(*plan.recommended), *plan.recommended);
  } else {
    j["recommended"] = {{"tensor", nullptr}, {"pipeline", nullptr}, {"fits", false}};
  }
  j["recommended"]["reason"] = plan.reason;
  return j;
}
#endif

}  // namespace tessera::planner
