// Planner: the arithmetic behind `tessera plan`. Given a model (its config and the bytes of its
// weights) and N GPUs, it lists every tensor-parallel (T) x expert-parallel (E) x pipeline-parallel
// (P) layout with T * E * P == N (E > 1 only for a mixture-of-experts model), the memory each GPU
// needs (weights, KV cache, activations), the bytes each GPU sends per generated token, whether it
// fits, and a recommended layout with the reason. Everything here is plain values computed from
// plain values: no devices are touched, no state is kept; the caller owns the ModelSpec and the
// Plan.
//
// The model of the arithmetic (every figure is bytes; GB means 1e9 bytes, not GiB):
//
// Layouts. Every (T, P) with T * P == N is considered; it is allowed when
//   - T divides num_heads (each rank holds whole query heads),
//   - num_kv_heads % T == 0 or T % num_kv_heads == 0 (KV heads are split, or replicated so that
//     each rank holds exactly one: ranks per KV head = T / num_kv_heads; vLLM's rule),
//   - T <= gpus_per_node (all-reduces twice per layer need NVLink, so a TP group stays inside one
//     node; only pipeline boundaries cross nodes),
//   - P <= num_layers, and T divides a MoE model's expert (and shared expert) width,
//   - E divides num_experts, E = 1 or T = 1 (Tessera runs expert parallelism with attention
//     replicated on the E ranks; EP x TP does not combine yet), and E <= gpus_per_node (one
//     all-reduce per MoE layer, like TP's).
// The others are listed as rejected with the rule they break.
//
// Weights per GPU. Layers are split evenly over the stages (the first L % P stages take one extra
// layer). Within a layer, q/o projections (and q bias) are split by query heads: bytes / T; k/v
// projections (and biases) by KV heads: bytes * kv_heads_per_rank / num_kv_heads with
// kv_heads_per_rank = max(num_kv_heads / T, 1); gate/up/down by the intermediate dimension:
// bytes * ceil(I / T) / I; norms (and any tensor not recognised) are replicated on every rank. The
// token embedding lives on the first stage and the LM head on the last, both split by vocabulary
// rows: bytes * ceil(V / T) / V. With tied embeddings the one table serves both ends, so with
// P > 1 it is held by the first and by the last stage. The final norm sits on the last stage. The
// bytes come from the file as stored (GGUF: each tensor's quantised size; safetensors: each
// tensor's byte range), or from a bare config.json's parameter count at --dtype. Splitting a
// block-quantised row is taken as proportional (an estimate when T does not divide it evenly).
// Mixture of experts: the routed experts' bytes are split by experts, bytes * (num_experts / E) /
// num_experts, then within an expert by its intermediate dimension like the MLP; routers (hidden x
// num_experts) are replicated; a shared expert is split like the MLP and held by every EP rank.
// Attention, norms and the embedding/LM head are replicated over the E ranks (split only by T).
//
// KV cache per GPU. 2 (K and V) * layers_in_stage * kv_heads_per_rank * head_dim * kv_bytes
// (bf16/f16: 2) * context * batch: the whole context of every sequence of the batch resident.
//
// Activations per GPU: an estimate of the peak scratch of one layer's forward pass (layers run one
// after another and reuse their buffers) for a prefill chunk of M = min(max_batched_tokens,
// context * batch) tokens at act_bytes (bf16: 2):
//   residual stream and its normed copy:   2 * M * hidden              (full width on every rank)
//   + the larger of attention and MLP:
//       attention: M * (2 * q_dim / T + 2 * kv_heads_per_rank * head_dim)  (q, out, k, v)
//       MLP:       M * 2 * ceil(I / T)      (gate and up; SiLU(gate) * up overwrites gate)
//   + on the last stage, fp32 logits of the sampled rows: batch * ceil(V / T) * 4.
// For a MoE layer the MLP term is M * (2 * k * ceil(I_e / T) + 2 * ceil(I_s / T)) * act_bytes (gate
// and up of the k experts each token is routed to, and of the shared expert of width I_s) plus the
// fp32 router logits M * num_experts * 4: the worst case, all k choices landing on this rank.
// Attention scores are not counted (a fused attention kernel does not materialise them).
//
// Fits: the largest per-stage total (weights + KV + activations) <= gpu_memory * utilization.
//
// Communication per generated token, for one sequence at decode, counted as the bytes one GPU
// sends along the token's path: its rank in every stage the token passes through, so the figure
// for P = 1 is exactly what each GPU sends per token, and every rank of a TP group sends the same.
//   TP (T > 1): a ring all-reduce of a message of m bytes sends 2 * (T - 1) * ceil(m / T) bytes
//   per rank. Per token: 2 all-reduces per layer (after attention, after the MLP) over all L
//   layers, plus 1 for the vocabulary-parallel embedding, each of hidden * act_bytes; plus the
//   ring all-gather of the vocabulary-parallel fp32 logits: (T - 1) * ceil(V / T) * 4.
//   EP (E > 1), data-parallel attention (parallel.expert_attention: data, the default): a token
//   lives on one rank; per MoE layer its normed hidden state goes once to each other rank that
//   holds at least one of its k experts, with its k expert ids and weights (8k bytes), and that
//   rank's partial output comes back. Under uniform routing (k distinct experts of N, N / E per
//   rank) the expected number of such ranks is D = (E - 1) * (1 - C(N - N/E, k) / C(N, k)), so
//   a2a = L * D * (2 * hidden * act_bytes + 8k) * T, rounded up: the bytes the group sends for
//   the token, both directions (a2a_remote_ranks gives D; the per-step count exchange is left
//   out; with T > 1 each of an EP group's TP ranks exchanges its own copy of the rows).
//   Replicated attention (expert_attention: replicated): each rank computes its experts' share of
//   every token's MoE output and the partial outputs are summed by one ring all-reduce over the E
//   ranks per layer: L * 2 * (E - 1) * ceil(hidden * act_bytes / E).
//   PP: (P - 1) stage boundaries, each sends the hidden state: hidden * act_bytes.
//   Multiply by the batch for the bytes per decode step.
//
// Time (when an interconnect is given: --interconnect-gbps): a roofline-plus-alpha-beta model of
// one decode step (every sequence of the batch gets one token, so it is also the per-token latency)
// and of the prefill of one prompt of prompt_tokens, summed over the stages a token passes through:
//   per stage   compute = bytes read / mem_bw + FLOPs / peak
//                 decode:  bytes = the stage's weights (a MoE's routed experts: the expected share
//                          touched by the batch's k * batch choices, 1 - (1 - k/N)^batch) + the
//                          KV cache of `context` tokens per sequence; FLOPs = 2 * active params *
//                          batch + attention 4 * batch * context * q_dim / T per layer
//                 prefill: bytes = the stage's weights once; FLOPs = 2 * active params * n +
//                          causal attention 2 * n^2 * q_dim / T per layer
//               comm    = TP: (2 per layer + 1 for the embedding on the first stage) ring
//                          all-reduces of m = rows * hidden * act_bytes, each 2 (T - 1) (alpha +
//                          ceil(m / T) / beta); the last stage's fp32 logits all-gather (T - 1)
//                          (alpha + rows * ceil(V / T) * 4 / beta); EP: one ring all-reduce per
//                          MoE layer over E; rows = batch at decode, n at prefill
//   PP hops     (P - 1) (alpha + rows * hidden * act_bytes / beta), never hidden (the token waits)
//   no overlap  sum over stages of compute + comm, plus the hops
//   overlap     sum over stages of max(compute, comm), plus the hops: the ideal that Tessera's
//               overlapped TP layer (two micro-batches) approaches; at batch 1 there is nothing to
//               split, so only the first figure applies there.
// beta = interconnect_gbps / 8 GB/s per direction per GPU, alpha = latency_us. Compute and memory
// terms add rather than overlap (an upper bound, within the smaller of the two of the roofline's
// max). Active params = the stage's weight bytes * parameter_count / total weight bytes (so a
// quantised file's params are counted right); a MoE's routed experts count k / N of theirs.
//
// Recommendation: among the layouts that fit, the smallest P (pipeline stages add bubbles and
// per-token latency; TP's all-reduces are cheap on NVLink); among those (T vs E for a MoE model)
// the fewest bytes sent per token, which favours EP (one all-reduce per layer against TP's two);
// T, E <= gpus_per_node keeps those all-reduces inside one node. When nothing fits, the layout with
// the smallest per-GPU total is reported with how far it is over.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/model/model_config.h"

namespace tessera::planner {

// Bytes of one decoder layer's weights, grouped by how tensor parallelism splits them.
struct LayerWeights {
  uint64_t attn_qo = 0;     // q and o projections (+ q bias): split by query heads
  uint64_t attn_kv = 0;     // k and v projections (+ biases): split by KV heads
  uint64_t mlp = 0;         // gate, up, down (and a shared expert): split by the intermediate dim
  uint64_t experts = 0;     // routed experts' gate, up, down: split by experts, then intermediate
  uint64_t replicated = 0;  // norms, routers and anything unrecognised: whole on every rank
  uint64_t total() const { return attn_qo + attn_kv + mlp + experts + replicated; }
};

// Where a model's weight bytes live.
struct WeightInventory {
  std::vector<LayerWeights> layers;  // one per decoder layer
  uint64_t embedding = 0;            // token embedding table
  uint64_t lm_head = 0;              // output projection; 0 when tied to the embedding
  uint64_t final_other = 0;          // final norm and other non-layer tensors (last stage)
  uint64_t total() const;
};

// A model as the planner sees it.
struct ModelSpec {
  model::ModelConfig config;
  WeightInventory weights;
  std::string source;        // the path it was read from
  std::string weights_from;  // "GGUF tensor sizes", "safetensors sizes", "parameter count at bf16"
};

// Bits per element of a dtype name: bf16, f16 (fp16), f32 (fp32), int8, fp8, int4. Throws
// kInvalidArgument naming the valid names.
int dtype_bits(const std::string& name);

// Weight bytes from a config's parameter count, every parameter at `bits` (a bare config.json).
WeightInventory inventory_from_config(const model::ModelConfig& c, int bits);
// Parameters of the model by the same count (embedding, layers, LM head unless tied, norms).
uint64_t parameter_count(const model::ModelConfig& c);

// D above: the expected number of the E - 1 other EP ranks that hold at least one of a token's k
// experts, each of the N experts equally likely (N / E per rank).
double a2a_remote_ranks(int num_experts, int k, int ep);

// Reads a GGUF file, a Hugging Face directory (config.json + safetensors; a directory with only
// config.json falls back to the parameter count) or a bare config.json. `dtype` is used only when
// the bytes come from the parameter count. Throws kNotFound / kCorruptFile / kUnsupported.
ModelSpec load_model_spec(const std::string& path, const std::string& dtype = "bf16");

struct PlanParams {
  int gpus = 1;
  int gpus_per_node = 0;                // 0: min(gpus, 8)
  double gpu_memory_gb = 80.0;          // per GPU, GB = 1e9 bytes
  double gpu_memory_utilization = 0.9;  // fraction the server may use
  int context = 4096;                   // tokens of KV cache per sequence
  int batch = 1;                        // sequences resident at once
  int max_batched_tokens = 2048;        // prefill chunk for the activation estimate
  int kv_bits = 16;                     // KV cache element
  int act_bits = 16;                    // activations and messages (bf16)
  // Expert parallelism's form: data-parallel attention with all-to-all (true, the topology's
  // default) or replicated attention with an all-reduce (parallel.expert_attention).
  bool expert_data_attention = true;
  // Time estimates (see above); interconnect_gbps 0: none.
  double interconnect_gbps = 0;   // link bandwidth per GPU and direction, Gbit/s
  double latency_us = 5.0;        // per message (alpha)
  double gpu_tflops = 989.0;      // dense 16-bit peak per GPU (H100 SXM)
  double gpu_mem_bw_gbs = 3350;   // memory bandwidth per GPU, GB/s (H100 SXM)
  int prompt_tokens = 0;          // prefill length for the time estimate; 0: max_batched_tokens
  void validate() const;          // throws kInvalidArgument naming the bad field
  int node_size() const;          // gpus_per_node, resolved
  uint64_t usable_bytes() const;  // gpu_memory_gb * 1e9 * utilization
};

struct Layout {
  int tensor = 1;
  int pipeline = 1;
  int expert = 1;
  int experts_per_rank = 0;  // 0 for a dense model
  int layers_per_stage = 0;  // of the largest stage
  int kv_heads_per_rank = 0;
  // Per GPU, of the stage whose total is largest (that stage decides the fit).
  uint64_t weight_bytes_per_gpu = 0;
  uint64_t kv_bytes_per_gpu = 0;
  uint64_t activation_bytes_per_gpu = 0;
  uint64_t total_bytes_per_gpu = 0;
  uint64_t kv_bytes_per_token = 0;  // KV bytes one token of context costs on that GPU
  uint64_t kv_tokens = 0;   // tokens of KV cache that fit beside weights and activations, in all
                            // (x E under data-parallel expert attention: each rank its own)
  int64_t spare_bytes = 0;  // usable - total (negative: over by that much)
  // Per generated token, per sequence (see the header comment for the convention).
  int allreduces_per_token = 0;  // TP's and EP's
  uint64_t comm_tp_bytes_per_token = 0;
  uint64_t comm_ep_bytes_per_token = 0;  // EP's bytes in the form planned (expert_data_attention)
  uint64_t a2a_bytes_per_token = 0;      // the data-parallel form's all-to-all bytes
  uint64_t ep_allreduce_bytes_per_token = 0;  // the replicated form's all-reduce bytes
  uint64_t comm_pp_bytes_per_token = 0;
  uint64_t comm_bytes_per_token = 0;
  bool fits = false;
  // Milliseconds, when PlanParams::interconnect_gbps > 0 (see "Time" above).
  struct Timing {
    double decode_compute_ms = 0, decode_comm_ms = 0, decode_ms = 0, decode_overlap_ms = 0;
    double prefill_compute_ms = 0, prefill_comm_ms = 0, prefill_ms = 0, prefill_overlap_ms = 0;
  };
  std::optional<Timing> time;
};

// What one pipeline stage holds, for the time estimate.
struct StageLoad {
  int layers = 0;
  uint64_t weights = 0;         // bytes per GPU, routed experts included
  uint64_t expert_weights = 0;  // of which routed experts
  uint64_t kv_per_token = 0;    // KV bytes per token of context per GPU
  bool first = false, last = false;
};
// The "Time" model for one layout over its stages (in order). Pure arithmetic.
Layout::Timing estimate_time(const ModelSpec& m, const PlanParams& p, int tensor, int expert,
                             const std::vector<StageLoad>& stages);

struct Rejected {
  int tensor = 1;
  int pipeline = 1;
  int expert = 1;
  std::string reason;
};

struct Plan {
  PlanParams params;
  std::vector<Layout> layouts;  // allowed layouts, by increasing P, then E
  std::vector<Rejected> rejected;
  std::optional<Layout> recommended;  // the pick (fits == false when nothing fits)
  std::string reason;                 // why, in a sentence or three
};

// Why (T, P, E) is not allowed for this model and these GPUs, or nullopt when it is.
std::optional<std::string> layout_problem(const model::ModelConfig& c, const PlanParams& p,
                                          int tensor, int pipeline, int expert = 1);
// The figures of one layout (allowed or not: no rules are checked here).
Layout evaluate(const ModelSpec& m, const PlanParams& p, int tensor, int pipeline, int expert = 1);
Plan make_plan(const ModelSpec& m, const PlanParams& p);

// The plan as a table and a recommendation, for people.
std::string format_plan(const ModelSpec& m, const Plan& plan);
// Bytes as "17.25 GB" / "4.73 MB" / "512 B" (decimal units).
std::string format_bytes(double bytes);

}  // namespace tessera::planner

#if TESSERA_HAVE_JSON
#include <nlohmann/json_fwd.hpp>
namespace tessera::planner {
// {"model": {...}, "layouts": [{"tensor", "pipeline", "weight_bytes_per_gpu", "kv_bytes_per_gpu",
//  "comm_bytes_per_token", "fits", ...}], "rejected": [...], "recommended": {..., "reason"}}
nlohmann::ordered_json plan_to_json(const ModelSpec& m, const Plan& plan);
}  // namespace tessera::planner
#endif
