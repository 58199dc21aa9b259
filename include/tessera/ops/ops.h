// The op interface. ops::* (no sub-namespace) is what layers call: it checks its arguments once,
// device-agnostically (shapes, dtypes, one device for all tensors), and runs the implementation
// table (backend.h) of that device:
//   ops::ref::*  the plain CPU reference (scalar loops, fp32 accumulation) - the specification;
//   ops::cpu::*  the fast CPU version (SIMD chosen at run time, BLAS, OpenMP threads), also the
//                guarded device's kernels (run with its memory opened, see core/allocator.h);
//   CUDA         launchers in kernels/, for tensors on a CUDA device.
// A layer never knows its backend. Ops allocate nothing: callers pass outputs of the right shape.
// Activations are F32 [rows, cols] row-major; weights may be any DType (quantized kept quantized).
// Index arrays (token ids, positions, slots, block tables) are I32 tensors on the data's device,
// so a step's metadata is uploaded once, not per op; host callers may pass a span (Indices).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::ops {

enum class RopeStyle : uint8_t {
  kInterleaved,  // pairs (x[2i], x[2i+1]): GGUF llama weights (Q/K rows permuted by the converter)
  kNeox,         // pairs (x[i], x[i+rot/2]): Hugging Face checkpoints, qwen2
};

struct RopeParams {
  int head_dim = 0;
  int rotary_dim = 0;  // <= head_dim; 0 means head_dim
  float theta = 10000.0f;
  RopeStyle style = RopeStyle::kInterleaved;
  float linear_factor = 1.0f;  // position / linear_factor ("linear" scaling)
  // Llama-3 scaling ("rope_type": "llama3"); off when llama3_factor == 0.
  float llama3_factor = 0.0f;
  float llama3_low_freq_factor = 1.0f;
  float llama3_high_freq_factor = 4.0f;
  int llama3_original_max_position = 8192;
  // Per-pair frequency divisors (GGUF `rope_freqs.weight`, where llama.cpp's converter bakes in
  // Llama-3 scaling); empty: none. Size rotary_dim/2 when set.
  std::vector<float> freq_factors;
  // rope_inv_freq of the fields above, stored once by with_inv_freq so the ops need not recompute
  // it every call (rotary_dim/2 pow per call per layer: ~2% of a CPU decode step). Used only while
  // the fields still equal the ones it was computed from, so a copy edited afterwards is never
  // served stale frequencies. Null: computed per call.
  std::shared_ptr<const struct RopeInvFreq> inv_freq;
};

// Inverse frequencies of the rotary pairs, after any scaling: rotary_dim/2 values. Always computed
// from the fields (the formula; the reference ops use it).
std::vector<float> rope_inv_freq(const RopeParams& p);

// What with_inv_freq stores: the fields the frequencies came from (without a cache of their own)
// and the frequencies.
struct RopeInvFreq {
  RopeParams source;
  std::vector<float> values;
};

// p with its inverse frequencies computed and stored (call it after the last edit of a field).
RopeParams with_inv_freq(RopeParams p);

// The inverse frequencies for p: the stored ones when they were computed from p's current fields,
// else rope_inv_freq(p) written into `scratch`. The span lives as long as p's cache or scratch.
std::span<const float> rope_frequencies(const RopeParams& p, std::vector<float>& scratch);

// Mixture-of-Experts routing (moe_route): logits [T, E] F32 -> per token the k chosen experts
// (ids [T, k] I32, best first) and their weights ([T, k] F32).
//   kSoftmaxTopK  softmax over all E, the k largest; renormalised to sum 1 when `renormalize`
//                 (Mixtral always; Qwen2/3-MoE when norm_topk_prob), which equals a softmax over
//                 the k chosen logits. Ties go to the lower expert id.
//   kSigmoid      k == E == 1: weight = sigmoid(logit), id 0 (Qwen2-MoE's shared-expert gate).
enum class MoeRouter : uint8_t { kSoftmaxTopK, kSigmoid };
struct MoeRouteParams {
  int k = 0;
  bool renormalize = false;
  MoeRouter router = MoeRouter::kSoftmaxTopK;
};

// One weight of ops::matmul_many: y = x w^T + bias (bias may point to an undefined Tensor).
struct MatmulTarget {
  const Tensor* w = nullptr;
  const Tensor* bias = nullptr;
  Tensor* y = nullptr;
  // Where the CPU rounds activations to int8 (Activations::kInt8): each row's 32 largest outputs
  // also get the product of the activations' rounding residual, quantized as a second int8 digit
  // (~15-bit activations for them; the rest keep one digit). For the logits: their argmax and the
  // tokens a sampler would pick are what the precision is for (benchmarks/int8_accuracy.py), at
  // the cost of 8 x 32 weight rows read again per row, not a second pass over the vocabulary. The
  // set depends on the row's own outputs only (batch-invariant). The reference and the fp32 path
  // are exact anyway; the CUDA int8 GEMV does not take it yet (it rounds these like any other).
  bool fine_activations = false;
};

// An I32 index array argument: a contiguous I32 tensor on the data's device, or a host span (or
// vector) viewed in place as a CPU tensor, for host callers and tests. The values must stay alive
// for the call.
class Indices {
 public:
  Indices(Tensor t);  // NOLINT(google-explicit-constructor): a tensor is an index array
  Indices(std::span<const int32_t> host);    // NOLINT(google-explicit-constructor)
  Indices(const std::vector<int32_t>& host)  // NOLINT(google-explicit-constructor)
      : Indices(std::span<const int32_t>(host)) {}
  const Tensor& tensor() const { return t_; }
  int64_t size() const { return t_.numel(); }

 private:
  Tensor t_;
};

// The paged KV cache of one layer: k and v are [num_blocks, block_size, num_kv_heads, head_dim]
// F32. Token t of a sequence lives in slot block_table[t / block_size] * block_size +
// t % block_size.
struct AttentionParams {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
};

// One step's batch: sequence s owns query rows [query_start[s], query_start[s+1]) of q, which are
// its newest q_len tokens; context_lens[s] counts all its tokens including those, so query row j
// sits at position context_lens[s] - q_len + j and attends causally to positions 0..that one.
// A step may mix prefill chunks (q_len > 1) and decodes (q_len == 1) of different lengths.
struct AttentionBatch {
  Indices query_start;   // num_seqs + 1
  Indices context_lens;  // num_seqs
  Indices block_tables;  // num_seqs * max_blocks_per_seq
  int max_blocks_per_seq = 0;
};

// Where a step of `rows` activation rows on `device` may be cut in two so that every op above and
// below (matmul above all, whose fast CPU path picks its algorithm by row count) gives bitwise
// the same rows on the two parts as on the whole; 0 when there is no such cut (fewer than 2 rows,
// or no half would stay in the whole's algorithm, or a device whose kernels are not yet checked
// for it). The model's overlapped TP path splits a step only there.
int64_t exact_row_split(Device device, int64_t rows);

namespace ref {
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
void embedding(const Tensor& table, const Indices& ids, Tensor& out);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add(Tensor& x, const Tensor& y);
void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p);
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
// y += x w^T + bias: the residual add fused into the matmul (a GPU adds in the GEMV's epilogue or
// through cuBLAS's beta). `scratch` (y's shape) is for a backend that computes the product first
// (the host ones: matmul into scratch, then add: bit for bit the two ops).
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y);
// matmul(x, *t.w, *t.bias, *t.y) for every target, one x: the projections that read the same
// activations (q, k, v; gate, up) in one call, so a backend quantizes x once and runs every
// weight's rows in one parallel pass (the same results as the separate calls, bit for bit).
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets);
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
void softmax(Tensor& x);
std::vector<int32_t> argmax(const Tensor& logits);
// Vocabulary-parallel embedding: out row t = table row (ids[t] - first_id) when that is a row of
// this shard, zeros otherwise (the all-reduce over the shards then assembles every row).
void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out);
// out row i = src row rows[i] (F32 [n, cols]): the logit rows of a step, for instance.
void gather_rows(const Tensor& src, const Indices& rows, Tensor& out);
// Cache row slots[t] = k[t], v[t]; a slot of -1 writes nothing (the padding rows of a decode step
// replayed at a bucketed batch size, model/decode_graphs.h).
void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache);
// rope(k, num_kv_heads, positions, p) then kv_append(k, v, slots, k_cache, v_cache), k left
// rotated as by the two ops: the model's K path in one call, one kernel where a backend fuses it.
void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache);
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out);
// Router (see MoeRouteParams): ids [T, k] I32 and weights [T, k] F32 from logits [T, E].
void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights);
// Expert FFNs: out[t] = sum over j < k with first_expert <= ids[t,j] < first_expert + E_local of
// weights[t,j] * down_e(silu(gate_e x[t]) * up_e x[t]), e = ids[t,j] - first_expert; choices of
// experts outside the held range contribute nothing (another rank holds them). x, out [T, H] F32;
// w_gate, w_up [E_local, F, H] and w_down [E_local, H, F] stacked experts, each of any weight
// dtype.
void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& ids, const Tensor& weights, int first_expert, Tensor& out);
}  // namespace ref

namespace cpu {
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
void embedding(const Tensor& table, const Indices& ids, Tensor& out);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add(Tensor& x, const Tensor& y);
void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p);
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
// y += x w^T + bias: the residual add fused into the matmul (a GPU adds in the GEMV's epilogue or
// through cuBLAS's beta). `scratch` (y's shape) is for a backend that computes the product first
// (the host ones: matmul into scratch, then add: bit for bit the two ops).
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y);
// matmul(x, *t.w, *t.bias, *t.y) for every target, one x: the projections that read the same
// activations (q, k, v; gate, up) in one call, so a backend quantizes x once and runs every
// weight's rows in one parallel pass (the same results as the separate calls, bit for bit).
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets);
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
void softmax(Tensor& x);
std::vector<int32_t> argmax(const Tensor& logits);
// Vocabulary-parallel embedding: out row t = table row (ids[t] - first_id) when that is a row of
// this shard, zeros otherwise (the all-reduce over the shards then assembles every row).
void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out);
// out row i = src row rows[i] (F32 [n, cols]): the logit rows of a step, for instance.
void gather_rows(const Tensor& src, const Indices& rows, Tensor& out);
// Cache row slots[t] = k[t], v[t]; a slot of -1 writes nothing (the padding rows of a decode step
// replayed at a bucketed batch size, model/decode_graphs.h).
void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache);
// rope(k, num_kv_heads, positions, p) then kv_append(k, v, slots, k_cache, v_cache), k left
// rotated as by the two ops: the model's K path in one call, one kernel where a backend fuses it.
void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache);
// The decode fusions (backend.h's optional entries) on the integer path, arguments checked by the
// dispatcher: the norm's or SiLU x up's rows made by their own row kernels as each row is
// quantized, and a residual added chunk by chunk by the threads that computed it, so one op's
// work is one pool pass with no serial elementwise op around it. Bit for bit the composed ops.
// False (the dispatcher composes) off that path: fp32 activations, a weight without an int8
// kernel, no AVX2, a non-F32 norm weight.
bool rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps,
                          std::span<const MatmulTarget> targets);
bool silu_mul_matmul(const Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& scratch, Tensor& y, bool accumulate);
void prefetch_weights(std::span<const MatmulTarget> targets);
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out);
// Router (see MoeRouteParams): ids [T, k] I32 and weights [T, k] F32 from logits [T, E].
void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights);
// Expert FFNs: out[t] = sum over j < k with first_expert <= ids[t,j] < first_expert + E_local of
// weights[t,j] * down_e(silu(gate_e x[t]) * up_e x[t]), e = ids[t,j] - first_expert; choices of
// experts outside the held range contribute nothing (another rank holds them). x, out [T, H] F32;
// w_gate, w_up [E_local, F, H] and w_down [E_local, H, F] stacked experts, each of any weight
// dtype.
void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& ids, const Tensor& weights, int first_expert, Tensor& out);
// Name of the SIMD level picked at run time ("avx512", "avx2", "scalar").
const char* simd_level();
// How matmul multiplies activations by Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and Q2_K..Q6_K weights. kInt8 (the
// default): each activation row is quantized to int8 per 32 elements and the dot products are
// integer (like llama.cpp's Q8 activations; relative error per block ~ 1/254 of the block's max).
// kF32: fp32 activations, equal to dequantize-then-dot up to fp32 rounding. One process-wide
// setting, made at startup (--activations, topology cpu_activations), like the op thread count.
enum class Activations : uint8_t { kInt8, kF32 };
void set_activations(Activations a);
Activations activations();
const char* activations_name(Activations a);        // "int8", "fp32"
Activations parse_activations(std::string_view s);  // "int8" / "fp32", else kInvalidArgument
// The integer kernels in use ("amx", "avx512vnni", "avxvnni", "avx2", "scalar"; amx: AMX tiles
// for packed weights' calls of 16 rows or more, AVX-512 VNNI otherwise): the widest the CPU (and,
// for AMX, the kernel) offers, unless set_int8_isa named a narrower one ("auto": back to the
// widest; a name this CPU cannot run: kUnsupported; an unknown one: kInvalidArgument). One
// process-wide setting, made at startup like the activation mode; benchmarks set it to compare the
// paths on one machine. The SIMD paths give bitwise the same results (the same exact int32 block
// sums, the same fp32 steps); scalar equals them on packed weights and differs by fp32 rounding on
// row-major ones.
const char* int8_isa();
void set_int8_isa(std::string_view name);
// exact_row_split for cpu::matmul (ops::exact_row_split).
int64_t exact_row_split(int64_t rows);
// Weight packing (src/ops/cpu/packed.h): the dtype matmul streams fastest for weight w under the
// current activation mode: the 8-row interleaved type of a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K
// [N, K] weight with N % 8 == 0 when the int8 kernels run (kInt8, AVX2 or better) and packing is
// on, else w.dtype().
DType pack_target(const Tensor& w);
// out (shape of w, dtype pack_target(w), host-addressable) = w in that layout.
void pack_weight_into(const Tensor& w, Tensor& out);
// Packing on (the default) or off: one process-wide switch, like the activation mode, read when
// a model loads (benchmarks compare the two layouts in one process).
void set_pack_weights(bool on);
bool pack_weights();
}  // namespace cpu

// Quantizers (round-to-nearest, ggml-compatible) so tests and tools can make quantized weights.
void quantize_row(DType type, const float* src, void* dst, int64_t n);

// w in the layout its device's matmul streams fastest, as a new tensor from `allocator` (the CPU:
// 8 rows interleaved, see cpu::pack_target), or w itself where the device has no such layout.
// A packed weight is for matmul only (no embedding, slicing or file); a model calls this once per
// weight at load.
Tensor pack_weight(const Tensor& w, const std::shared_ptr<Allocator>& allocator);

// Dispatching entry points used by layers. `bias` may be an undefined Tensor (no bias). argmax
// returns host values (it copies the result back from the device).
void embedding(const Tensor& table, const Indices& ids, Tensor& out);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add(Tensor& x, const Tensor& y);
void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p);
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
// y += x w^T + bias: the residual add fused into the matmul (a GPU adds in the GEMV's epilogue or
// through cuBLAS's beta). `scratch` (y's shape) is for a backend that computes the product first
// (the host ones: matmul into scratch, then add: bit for bit the two ops).
void matmul_add(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch, Tensor& y);
// matmul(x, *t.w, *t.bias, *t.y) for every target, one x: the projections that read the same
// activations (q, k, v; gate, up) in one call, so a backend quantizes x once and runs every
// weight's rows in one parallel pass (the same results as the separate calls, bit for bit).
void matmul_many(const Tensor& x, std::span<const MatmulTarget> targets);
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
// The fusions decode wants (issue 13 item 3), each the same as the ops it names:
// matmul_many(rms_norm(x, norm, eps), targets), `normed` [rows, cols] receiving the normed rows
// where the backend composes the two ops and left unwritten where it fuses them (the CUDA int8
// GEMV normalises each row as it quantizes it: the same bits as the two kernels).
void rms_norm_matmul_many(const Tensor& x, const Tensor& norm, float eps, Tensor& normed,
                          std::span<const MatmulTarget> targets);
// y = silu(gate) * up times w^T (+ bias), or with `accumulate` added to y as matmul_add (scratch:
// matmul_add's); where the backend composes, gate is overwritten with silu(gate) * up first.
void silu_mul_matmul(Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                     Tensor& scratch, Tensor& y, bool accumulate);
// A hint: a matmul over these targets' weights comes next, after some serial work (norms, rope,
// attention's bookkeeping). A backend whose threads idle through that work may start reading the
// weights into the caches of the threads that will multiply them (the CPU's pool workers, each
// its own first rows). Changes no result; a no-op where a backend has nothing to gain.
void prefetch_weights(std::span<const MatmulTarget> targets);
void softmax(Tensor& x);
std::vector<int32_t> argmax(const Tensor& logits);
// Vocabulary-parallel embedding: out row t = table row (ids[t] - first_id) when that is a row of
// this shard, zeros otherwise (the all-reduce over the shards then assembles every row).
void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out);
// out row i = src row rows[i] (F32 [n, cols]): the logit rows of a step, for instance.
void gather_rows(const Tensor& src, const Indices& rows, Tensor& out);
// Cache row slots[t] = k[t], v[t]; a slot of -1 writes nothing (the padding rows of a decode step
// replayed at a bucketed batch size, model/decode_graphs.h).
void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache);
// rope(k, num_kv_heads, positions, p) then kv_append(k, v, slots, k_cache, v_cache), k left
// rotated as by the two ops: the model's K path in one call, one kernel where a backend fuses it.
void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache);
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out);

// Router (see MoeRouteParams): ids [T, k] I32 and weights [T, k] F32 from logits [T, E].
void moe_route(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights);
// Expert FFNs: out[t] = sum over j < k with first_expert <= ids[t,j] < first_expert + E_local of
// weights[t,j] * down_e(silu(gate_e x[t]) * up_e x[t]), e = ids[t,j] - first_expert; choices of
// experts outside the held range contribute nothing (another rank holds them). x, out [T, H] F32;
// w_gate, w_up [E_local, F, H] and w_down [E_local, H, F] stacked experts, each of any weight
// dtype.
void moe_experts(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                 const Indices& ids, const Tensor& weights, int first_expert, Tensor& out);

}  // namespace tessera::ops
