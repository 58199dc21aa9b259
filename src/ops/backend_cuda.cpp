// The CUDA implementation table and the CUDA caching allocator (backend.h). Kernels come from
// kernels/; every launch goes to the stream of its tensors' allocator (cuda_common.h DeviceScope:
// the worker's own stream, made by CudaCachingAllocator), so one worker's launches, copies, cuBLAS
// calls and NCCL collectives are ordered with each other on one stream; the matmul (GEMV / cuBLAS)
// is in cuda_matmul.cpp, the MoE ops in cuda_moe.cpp. Index arrays arrive on the device already
// (the model uploads a step's metadata once), and their values were validated on the host before
// the upload, so nothing here reads device memory back except argmax's result and moe_experts'
// routing choices (T x k ints, to group the tokens by expert). Every op of the host tables has a
// kernel; none has run on a GPU yet (the parity suite's cuda instances, benchmarks/gpu/run.sh, are
// the proof still to come).
#include "tessera/core/error.h"
#include "tessera/ops/backend.h"

#if TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include "check.h"
#include "cuda_allocator.h"
#include "cuda_common.h"
#include "tessera/core/error.h"
#include "tessera/kernels/elementwise.h"
#include "tessera/kernels/model_ops.h"
#include "tessera/kernels/sample.h"
#include "tessera/kernels/weight_ops.h"
#endif

namespace tessera::ops {

#if TESSERA_HAVE_CUDA
namespace {

using cuda::check;
using cuda::DeviceScope;
using cuda::narrow;
using cuda::Scratch;
using cuda::weight_type;
using cuda::weight_type_of;

namespace gpu {

const int32_t* ids_of(const Indices& i) { return i.tensor().data_as<const int32_t>(); }

// Every op; every weight format for the ops that take weights, F32 for the rest (rms_norm
// weights too: the model keeps norms in f32). The same pairs as the host tables, so a model
// that runs on the CPU passes the start check here.
bool cuda_supports(Op op, DType dtype) {
  kernels::WeightType t{};
  switch (op) {
    case Op::kEmbedding:
    case Op::kEmbeddingShard:
    case Op::kMatmul:
    case Op::kMoeExperts:  // the experts go through the matmul
      return weight_type(dtype, &t);
    case Op::kKvAppend:
    case Op::kRopeKvAppend:
    case Op::kPagedAttention:  // the cache's type
      return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
    default:
      return dtype == DType::kF32;
  }
}

void embedding(const Tensor& table, const Indices& ids, Tensor& out) {
  DeviceScope scope("embedding", out);
  check(kernels::launch_embedding_rows(out.data_as<float>(), table.data(), weight_type_of(table),
                                       table.row_bytes(), ids_of(ids),
                                       narrow(ids.size(), "embedding", "ids"), table.dim(1), 0,
                                       table.dim(0), /*masked=*/false, scope.stream()),
        "embedding", "launch");
}

void embedding_shard(const Tensor& table, const Indices& ids, int64_t first_id, Tensor& out) {
  DeviceScope scope("embedding_shard", out);
  check(kernels::launch_embedding_rows(out.data_as<float>(), table.data(), weight_type_of(table),
                                       table.row_bytes(), ids_of(ids),
                                       narrow(ids.size(), "embedding_shard", "ids"), table.dim(1),
                                       first_id, table.dim(0), /*masked=*/true, scope.stream()),
        "embedding_shard", "launch");
}

void add(Tensor& x, const Tensor& y) {
  DeviceScope scope("add", x);
  check(kernels::launch_add(x.data_as<float>(), y.data_as<float>(), static_cast<long>(x.numel()),
                            scope.stream()),
        "add", "launch");
}

void softmax(Tensor& x) {
  DeviceScope scope("softmax", x);
  check(kernels::launch_softmax(x.data_as<float>(), narrow(detail::rows_of(x), "softmax", "rows"),
                                detail::cols_of(x), scope.stream()),
        "softmax", "launch");
}

void gather_rows(const Tensor& src, const Indices& rows, Tensor& out) {
  DeviceScope scope("gather_rows", src);
  check(kernels::launch_gather_rows(out.data_as<float>(), src.data_as<float>(), ids_of(rows),
                                    narrow(rows.size(), "gather_rows", "rows"),
                                    detail::cols_of(src), scope.stream()),
        "gather_rows", "launch");
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  DeviceScope scope("rms_norm", x);
  const int64_t d = detail::cols_of(x), rows = detail::rows_of(x);
  check(kernels::launch_rms_norm(out.data_as<float>(), x.data_as<float>(), weight.data_as<float>(),
                                 narrow(rows, "rms_norm", "rows"), narrow(d, "rms_norm", "cols"),
                                 eps, scope.stream()),
        "rms_norm", "launch");
}

void rope(Tensor& x, int num_heads, const Indices& positions, const RopeParams& p) {
  DeviceScope scope("rope", x);
  const int rot = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  // Frequencies come from the same host function as the CPU ops, so every scaling matches; they
  // travel by value in the launch's arguments (no upload, nothing for a graph to re-copy).
  std::vector<float> scratch;
  const std::span<const float> inv = rope_frequencies(p, scratch);
  check(kernels::launch_rope(x.data_as<float>(), ids_of(positions), inv.data(),
                             narrow(positions.size(), "rope", "tokens"), num_heads, p.head_dim, rot,
                             p.style == RopeStyle::kNeox, scope.stream()),
        "rope", "launch");
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  DeviceScope scope("silu_mul", gate);
  check(kernels::launch_silu_mul(out.data_as<float>(), gate.data_as<float>(), up.data_as<float>(),
                                 static_cast<long>(gate.numel()), scope.stream()),
        "silu_mul", "launch");
}

std::vector<int32_t> argmax(const Tensor& logits) {
  DeviceScope scope("argmax", logits);
  const int64_t cols = detail::cols_of(logits), rows = detail::rows_of(logits);
  std::vector<int32_t> host(static_cast<size_t>(rows), 0);
  if (rows == 0) return host;
  int32_t* dout = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&dout), host.size() * sizeof(int32_t),
                        scope.stream()),
        "argmax", "cudaMallocAsync");
  cudaError_t e = kernels::launch_argmax(dout, logits.data_as<float>(),
                                         narrow(rows, "argmax", "rows"), cols, scope.stream());
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(host.data(), dout, host.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                        scope.stream());
  cudaFreeAsync(dout, scope.stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(scope.stream());
  check(e, "argmax", "launch / cudaMemcpyAsync");
  return host;
}

// The words were validated by SampleBatch on the host and the shapes by the dispatcher.
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs) {
  DeviceScope scope("sample", logits);
  check(kernels::launch_sample(logits.data_as<float>(), meta.words.data_as<const int32_t>(),
                               tokens.data_as<int32_t>(), logprobs.data_as<float>(), meta.rows,
                               meta.vocab, meta.max_top + 1, scope.stream()),
        "sample", "launch");
}

// The cache's element type (the dispatcher checked it is F32, F16 or BF16).
kernels::KvType kv_type(const Tensor& cache) {
  switch (cache.dtype()) {
    case DType::kF16:
      return kernels::KvType::kF16;
    case DType::kBF16:
      return kernels::KvType::kBF16;
    default:
      return kernels::KvType::kF32;
  }
}

void kv_append(const Tensor& k, const Tensor& v, const Indices& slots, Tensor& k_cache,
               Tensor& v_cache) {
  DeviceScope scope("kv_append", k);
  const int64_t width = k_cache.dim(2) * k_cache.dim(3);
  check(
      kernels::launch_kv_append(k_cache.data(), v_cache.data(), kv_type(k_cache),
                                k.data_as<float>(), v.data_as<float>(), ids_of(slots),
                                narrow(slots.size(), "kv_append", "slots"), width, scope.stream()),
      "kv_append", "launch");
}

void rope_kv_append(Tensor& k, const Tensor& v, int num_kv_heads, const Indices& positions,
                    const RopeParams& p, const Indices& slots, Tensor& k_cache, Tensor& v_cache) {
  const char* op = "rope_kv_append";
  DeviceScope scope(op, k);
  const int rot = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  std::vector<float> scratch;
  const std::span<const float> inv = rope_frequencies(p, scratch);  // by value, as rope's
  check(
      kernels::launch_rope_kv_append(
          k.data_as<float>(), v.data_as<float>(), k_cache.data(), v_cache.data(), kv_type(k_cache),
          ids_of(positions), ids_of(slots), inv.data(), narrow(positions.size(), op, "tokens"),
          num_kv_heads, p.head_dim, rot, p.style == RopeStyle::kNeox, scope.stream()),
      op, "launch");
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
  const char* op = "paged_attention";
  DeviceScope scope(op, q);
  const int64_t num_seqs = batch.context_lens.size(), tokens = detail::rows_of(q);
  if (num_seqs == 0 || tokens == 0) return;
  const kernels::PagedAttentionArgs args{
      .out = out.data_as<float>(),
      .q = q.data_as<float>(),
      .k_cache = k_cache.data(),
      .v_cache = v_cache.data(),
      .kv_type = kv_type(k_cache),
      .query_start = ids_of(batch.query_start),
      .context_lens = ids_of(batch.context_lens),
      .block_tables = ids_of(batch.block_tables),
      .num_seqs = narrow(num_seqs, op, "sequences"),
      .num_tokens = narrow(tokens, op, "tokens"),
      .max_blocks_per_seq = batch.max_blocks_per_seq,
      .num_heads = p.num_heads,
      .num_kv_heads = p.num_kv_heads,
      .head_dim = p.head_dim,
      .block_size = p.block_size,
      .scale = p.scale,
  };
  // Flash decoding where the plan takes the shape (head_dim <= 128), else the simple kernel. The
  // host knows no context length without a sync, so the split plan uses the table's capacity.
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, scope.device()), op,
        "cudaDeviceGetAttribute");
  const auto plan = kernels::attn::plan_attention(
      args.num_tokens, args.num_seqs, p.num_heads, p.num_kv_heads, p.head_dim,
      int64_t{batch.max_blocks_per_seq} * p.block_size, sms);
  if (!plan.ok) {
    check(kernels::launch_paged_attention(args, scope.stream()), op, "launch");
    return;
  }
  Scratch workspace(
      kernels::attn::workspace_bytes(plan, args.num_tokens, args.num_seqs, p.num_heads, p.head_dim),
      op, scope.stream());
  check(kernels::launch_flash_attention(args, plan, workspace.get(), scope.stream()), op, "launch");
}

}  // namespace gpu

}  // namespace

const Backend* cuda_backend() {
  static constexpr Backend kCuda{
      .name = "cuda",
      .supports = gpu::cuda_supports,
      .embedding = gpu::embedding,
      .embedding_shard = gpu::embedding_shard,
      .rms_norm = gpu::rms_norm,
      .add = gpu::add,
      .rope = gpu::rope,
      .matmul = cuda::matmul,
      .matmul_many = cuda::matmul_many,
      .matmul_add = cuda::matmul_add,
      .silu_mul = gpu::silu_mul,
      .softmax = gpu::softmax,
      .argmax = gpu::argmax,
      .gather_rows = gpu::gather_rows,
      .kv_append = gpu::kv_append,
      .paged_attention = gpu::paged_attention,
      .moe_route = cuda::moe_route,
      .moe_experts = cuda::moe_experts,
      .rope_kv_append = gpu::rope_kv_append,
      .sample = gpu::sample,
      .pack_weight = nullptr,
      .rms_norm_matmul_many = cuda::rms_norm_matmul_many,
      .silu_mul_matmul = cuda::silu_mul_matmul,
  };
  return &kCuda;
}

std::shared_ptr<Allocator> make_allocator(Device device) {
  if (device.is_cuda()) return std::make_shared<cuda::CachingAllocator>(device.index);
  if (device.type == DeviceType::kCPU) return make_host_cache();
  return default_allocator(device);
}

#else

const Backend* cuda_backend() { return nullptr; }

std::shared_ptr<Allocator> make_allocator(Device device) {
  if (device.is_cuda())
    fail(ErrorCode::kUnavailable,
         "backend cuda: this build of tessera has no CUDA (configure with "
         "the CUDA toolkit present)");
  if (device.type == DeviceType::kCPU) return make_host_cache();
  return default_allocator(device);
}

#endif

}  // namespace tessera::ops
