// Backends: one implementation table per device kind (in the style of ggml's backend interface).
// ops::* check their arguments once (ops.h) and call the table of their tensors' device; a table
// says which (op, dtype) pairs it implements and leaves the rest null. Adding an op touches ops.h,
// this table, the reference, each device's file and the parity suite (tests/ops/backend_ops_test).
//   ref      the reference ops (the specification; the parity suite's baseline)
//   cpu      the fast CPU ops
//   guarded  the fast CPU ops run with the guarded device's memory opened (HostAccess)
//   cuda     kernels/ launchers (built with TESSERA_HAVE_CUDA; a subset of the ops so far)
// Tables are immutable; the CUDA allocator (make_allocator) is owned by whoever asks for it.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "tessera/core/allocator.h"
#include "tessera/ops/ops.h"
#include "tessera/ops/sample.h"

namespace tessera::ops {

enum class Op : uint8_t {
  kEmbedding,
  kEmbeddingShard,
  kRmsNorm,
  kAdd,
  kRope,
  kMatmul,
  kSiluMul,
  kSoftmax,
  kArgmax,
  kGatherRows,
  kKvAppend,
  kPagedAttention,
  kMoeRoute,
  kMoeExperts,
  kRopeKvAppend,
  kSample,
};
inline constexpr Op kAllOps[] = {
    Op::kEmbedding, Op::kEmbeddingShard, Op::kRmsNorm,      Op::kAdd,
    Op::kRope,      Op::kMatmul,         Op::kSiluMul,      Op::kSoftmax,
    Op::kArgmax,    Op::kGatherRows,     Op::kKvAppend,     Op::kPagedAttention,
    Op::kMoeRoute,  Op::kMoeExperts,     Op::kRopeKvAppend, Op::kSample};
std::string_view op_name(Op op);

struct Backend {
  const char* name;
  // Does the table implement `op` for `dtype` (the table's / weight's dtype for embedding and
  // matmul, the KV cache's for kv_append, rope_kv_append and paged_attention, F32 for the rest)?
  bool (*supports)(Op op, DType dtype);
  void (*embedding)(const Tensor& table, const Indices& ids, Tensor& out);
  void (*embedding_shard)(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out);
  void (*rms_norm)(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
  void (*add)(Tensor& x, const Tensor& y);
  void (*rope)(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p);
  void (*matmul)(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
  // supports() as matmul (Op::kMatmul with each weight's dtype).
  void (*matmul_many)(const Tensor& x, std::span<const MatmulTarget> targets);
  void (*matmul_add)(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& scratch,
                     Tensor& y);
  void (*silu_mul)(const Tensor& gate, const Tensor& up, Tensor& out);
  void (*softmax)(Tensor& x);
  std::vector<int32_t> (*argmax)(const Tensor& logits);  // host values
  void (*gather_rows)(const Tensor& src, const Indices& rows, Tensor& out);
  void (*kv_append)(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
                    Tensor& v_cache);
  void (*paged_attention)(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                          const AttentionBatch& batch, const AttentionParams& p, Tensor& out);
  void (*moe_route)(const Tensor& logits, const MoeRouteParams& p, Tensor& ids, Tensor& weights);
  // dtype for supports(): each of the three expert tensors' weight dtype.
  void (*moe_experts)(const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                      const Tensor& w_down, const Indices& ids, const Tensor& weights,
                      int first_expert, Tensor& out);
  void (*rope_kv_append)(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                         const RopeParams& p, const Indices& slots, Tensor& k_cache,
                         Tensor& v_cache);
  void (*sample)(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs);
  // ops::pack_weight; null: the device keeps weights as they are.
  Tensor (*pack_weight)(const Tensor& w, const std::shared_ptr<Allocator>& allocator);
  // Optional fusions (ops::rms_norm_matmul_many, ops::silu_mul_matmul), checked by the dispatcher;
  // null, or false returned for a call the backend does not fuse: the dispatcher composes the ops
  // above. The CUDA table's: the int8 GEMV's quantizer reads the norm's / SiLU x up's rows; the
  // CPU's: the integer matmul's quantizer makes them (cpu::rms_norm_matmul_many).
  bool (*rms_norm_matmul_many)(const Tensor& x, const Tensor& norm, float eps,
                               std::span<const MatmulTarget> targets) = nullptr;
  bool (*silu_mul_matmul)(const Tensor& gate, const Tensor& up, const Tensor& w, const Tensor& bias,
                          Tensor& scratch, Tensor& y, bool accumulate) = nullptr;
  // ops::prefetch_weights; null: the hint is ignored.
  void (*prefetch_weights)(std::span<const MatmulTarget> targets) = nullptr;
};

const Backend& ref_backend();
const Backend& cpu_backend();
const Backend& guarded_backend();
// The CUDA table; null when built without CUDA.
const Backend* cuda_backend();
// The table ops::* use for tensors on `device`; throws kUnsupported for CUDA without CUDA.
const Backend& backend_for(Device device);

// Memory of `device`: core's host cache for the CPU (make_host_cache: a worker's activations come
// and go in the same sizes every step), its guarded allocator for the guarded device; for CUDA a
// caching allocator on that GPU (throws kUnavailable when the build has no CUDA or the GPU is
// absent).
std::shared_ptr<Allocator> make_allocator(Device device);

}  // namespace tessera::ops
