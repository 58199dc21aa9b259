// ops::* entry points: route each call to the backend that owns its tensors. CPU tensors go to
// ops::cpu. With TESSERA_HAVE_CUDA, CUDA tensors go to the launchers in kernels/ for the ops that
// have one (embedding, rms_norm, rope, silu_mul, argmax, kv_append, paged_attention); the rest
// fail with kUnsupported for CUDA tensors. Holds no state.
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "check.h"
#include "tessera/core/error.h"
#include "tessera/ops/ops.h"

#if TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include "tessera/kernels/elementwise.h"
#include "tessera/kernels/model_ops.h"
#endif

namespace tessera::ops {
namespace {

// True when every defined tensor is on the CPU; throws when any lives on a CUDA device.
void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->defined() && !t->device().is_cpu())
      fail(ErrorCode::kUnsupported, "CUDA op ", op, " not built yet (tensor ", t->str(), ")");
  }
}

#if TESSERA_HAVE_CUDA
// The CUDA path. Every kernel runs on the default (legacy) stream 0 for now, so launches are
// ordered with each other and with the synchronous copies below; a per-worker stream comes with
// the CUDA executor. Launch errors are reported here; faults inside a kernel surface at the next
// synchronising call (as usual for CUDA).
namespace gpu {

constexpr cudaStream_t kStream = nullptr;

bool any_cuda(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->defined() && !t->device().is_cpu()) return true;
  return false;
}

void check(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess)
    fail(ErrorCode::kInternal, op, ": ", what, " failed: ", cudaGetErrorString(e));
}

// Requires every defined tensor to be contiguous and on one CUDA device, and makes that device
// current for the call (restoring the caller's device afterwards).
class DeviceScope {
 public:
  DeviceScope(const char* op, std::initializer_list<const Tensor*> tensors) {
    const Tensor* first = nullptr;
    for (const Tensor* t : tensors) {
      if (!t->defined()) continue;
      if (!first) first = t;
      if (t->device().is_cpu() || t->device() != first->device())
        fail(ErrorCode::kInvalidArgument, op, ": tensors on different devices (", first->str(),
             " and ", t->str(), ")");
      if (!t->is_contiguous())
        fail(ErrorCode::kInvalidArgument, op, ": ", t->str(), " is not contiguous");
    }
    check(cudaGetDevice(&prev_), op, "cudaGetDevice");
    device_ = first->device().index;
    if (device_ != prev_) check(cudaSetDevice(device_), op, "cudaSetDevice");
  }
  ~DeviceScope() {
    if (device_ != prev_) cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  int device_ = 0;
};

// A CPU-labelled alias with the shape and dtype of a CUDA tensor, so the shared validation in
// check.h (which insists on CPU tensors) runs unchanged and CUDA calls fail exactly like CPU ones.
// The checks read only shape, dtype and device; the alias's bytes are never touched.
Tensor shape_alias(const Tensor& t) {
  auto s = Storage::borrow(t.data(), t.nbytes(), t.storage(), Device::cpu());
  return Tensor::from_storage(std::move(s), 0, t.shape(), t.dtype());
}

// Device copy of a host array (indices, frequencies), freed stream-ordered at scope exit. The
// copy is from pageable memory, so it has been staged before cudaMemcpyAsync returns and the
// host span may die right after.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(const char* op, std::span<const T> host) {
    if (host.empty()) return;
    check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), host.size_bytes(), kStream), op,
          "cudaMallocAsync");
    const cudaError_t e =
        cudaMemcpyAsync(ptr_, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, kStream);
    if (e != cudaSuccess) {
      cudaFreeAsync(ptr_, kStream);
      check(e, op, "cudaMemcpyAsync");
    }
  }
  ~DeviceArray() {
    if (ptr_) cudaFreeAsync(ptr_, kStream);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

int narrow(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT32_MAX) fail(ErrorCode::kOutOfRange, op, ": ", what, " ", v, " too large");
  return static_cast<int>(v);
}

void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) {
  DeviceScope scope("embedding", {&table, &out});
  kernels::TableType type{};
  switch (table.dtype()) {
    case DType::kF32:
      type = kernels::TableType::kF32;
      break;
    case DType::kF16:
      type = kernels::TableType::kF16;
      break;
    case DType::kBF16:
      type = kernels::TableType::kBF16;
      break;
    default:
      fail(ErrorCode::kUnsupported, "embedding: CUDA tables must be f32/f16/bf16, got ",
           table.str());
  }
  const int64_t d = detail::check_embedding(shape_alias(table), ids, shape_alias(out));
  DeviceArray<int32_t> dids("embedding", ids);
  check(kernels::launch_embedding(out.data_as<float>(), table.data(), type, dids.get(),
                                  narrow(static_cast<int64_t>(ids.size()), "embedding", "ids"), d,
                                  kStream),
        "embedding", "launch");
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  DeviceScope scope("rms_norm", {&x, &weight, &out});
  detail::check_f32("rms_norm", "x", shape_alias(x));
  detail::check_f32("rms_norm", "out", shape_alias(out));
  if (weight.dtype() != DType::kF32)
    fail(ErrorCode::kUnsupported, "rms_norm: CUDA weight must be f32, got ", weight.str());
  const int64_t d = detail::cols_of(x), rows = detail::rows_of(x);
  if (weight.numel() != d || out.shape() != x.shape())
    fail(ErrorCode::kInvalidArgument, "rms_norm: x ", x.str(), " weight ", weight.str(), " out ",
         out.str());
  check(kernels::launch_rms_norm(out.data_as<float>(), x.data_as<float>(), weight.data_as<float>(),
                                 narrow(rows, "rms_norm", "rows"), narrow(d, "rms_norm", "cols"),
                                 eps, kStream),
        "rms_norm", "launch");
}

void rope(Tensor& x, int num_heads, std::span<const int32_t> positions, const RopeParams& p) {
  DeviceScope scope("rope", {&x});
  const int rot = detail::check_rope("rope", shape_alias(x), num_heads, positions, p);
  // Frequencies come from the same host function as the CPU ops, so every scaling matches.
  const std::vector<float> inv = rope_inv_freq(p);
  DeviceArray<int32_t> dpos("rope", positions);
  DeviceArray<float> dinv("rope", std::span<const float>(inv));
  check(kernels::launch_rope(x.data_as<float>(), dpos.get(), dinv.get(),
                             narrow(static_cast<int64_t>(positions.size()), "rope", "tokens"),
                             num_heads, p.head_dim, rot, p.style == RopeStyle::kNeox, kStream),
        "rope", "launch");
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  DeviceScope scope("silu_mul", {&gate, &up, &out});
  detail::check_f32("silu_mul", "gate", shape_alias(gate));
  detail::check_f32("silu_mul", "up", shape_alias(up));
  detail::check_f32("silu_mul", "out", shape_alias(out));
  if (gate.shape() != up.shape() || out.shape() != gate.shape())
    fail(ErrorCode::kInvalidArgument, "silu_mul: gate ", gate.str(), " up ", up.str(), " out ",
         out.str());
  check(kernels::launch_silu_mul(out.data_as<float>(), gate.data_as<float>(), up.data_as<float>(),
                                 static_cast<long>(gate.numel()), kStream),
        "silu_mul", "launch");
}

std::vector<int32_t> argmax(const Tensor& logits) {
  DeviceScope scope("argmax", {&logits});
  detail::check_f32("argmax", "logits", shape_alias(logits));
  const int64_t cols = detail::cols_of(logits), rows = detail::rows_of(logits);
  std::vector<int32_t> host(static_cast<size_t>(rows), 0);
  if (rows == 0) return host;
  std::vector<int32_t> zeros(host);
  DeviceArray<int32_t> dout("argmax", std::span<const int32_t>(zeros));
  check(kernels::launch_argmax(dout.get(), logits.data_as<float>(), narrow(rows, "argmax", "rows"),
                               cols, kStream),
        "argmax", "launch");
  // Synchronous on the default stream: waits for the kernel.
  check(cudaMemcpy(host.data(), dout.get(), host.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
        "argmax", "cudaMemcpy");
  return host;
}

void kv_append(const Tensor& k, const Tensor& v, std::span<const int32_t> slots, Tensor& k_cache,
               Tensor& v_cache) {
  DeviceScope scope("kv_append", {&k, &v, &k_cache, &v_cache});
  const int64_t width = detail::check_kv_append("kv_append", shape_alias(k), shape_alias(v), slots,
                                                shape_alias(k_cache), shape_alias(v_cache));
  DeviceArray<int32_t> dslots("kv_append", slots);
  check(kernels::launch_kv_append(k_cache.data_as<float>(), v_cache.data_as<float>(),
                                  k.data_as<float>(), v.data_as<float>(), dslots.get(),
                                  narrow(static_cast<int64_t>(slots.size()), "kv_append", "slots"),
                                  width, kStream),
        "kv_append", "launch");
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
  const char* op = "paged_attention";
  DeviceScope scope(op, {&q, &k_cache, &v_cache, &out});
  const int64_t num_seqs = detail::check_attention(
      op, shape_alias(q), shape_alias(k_cache), shape_alias(v_cache), batch, p, shape_alias(out));
  const int64_t tokens = detail::rows_of(q);
  if (num_seqs == 0 || tokens == 0) return;
  const auto tables = batch.block_tables.first(static_cast<size_t>(num_seqs) *
                                               static_cast<size_t>(batch.max_blocks_per_seq));
  DeviceArray<int32_t> dstart(op, batch.query_start), dctx(op, batch.context_lens),
      dtables(op, tables);
  const kernels::PagedAttentionArgs args{
      .out = out.data_as<float>(),
      .q = q.data_as<float>(),
      .k_cache = k_cache.data_as<float>(),
      .v_cache = v_cache.data_as<float>(),
      .query_start = dstart.get(),
      .context_lens = dctx.get(),
      .block_tables = dtables.get(),
      .num_seqs = narrow(num_seqs, op, "sequences"),
      .num_tokens = narrow(tokens, op, "tokens"),
      .max_blocks_per_seq = batch.max_blocks_per_seq,
      .num_heads = p.num_heads,
      .num_kv_heads = p.num_kv_heads,
      .head_dim = p.head_dim,
      .block_size = p.block_size,
      .scale = p.scale,
  };
  check(kernels::launch_paged_attention(args, kStream), op, "launch");
}

}  // namespace gpu
#endif  // TESSERA_HAVE_CUDA

}  // namespace

void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&table, &out})) return gpu::embedding(table, ids, out);
#endif
  require_cpu("embedding", {&table, &out});
  cpu::embedding(table, ids, out);
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&x, &weight, &out})) return gpu::rms_norm(x, weight, eps, out);
#endif
  require_cpu("rms_norm", {&x, &weight, &out});
  cpu::rms_norm(x, weight, eps, out);
}

void add(Tensor& x, const Tensor& y) {
  require_cpu("add", {&x, &y});
  cpu::add(x, y);
}

void rope(Tensor& x, int num_heads, std::span<const int32_t> positions, const RopeParams& p) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&x})) return gpu::rope(x, num_heads, positions, p);
#endif
  require_cpu("rope", {&x});
  cpu::rope(x, num_heads, positions, p);
}

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  require_cpu("matmul", {&x, &w, &bias, &y});
  cpu::matmul(x, w, bias, y);
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&gate, &up, &out})) return gpu::silu_mul(gate, up, out);
#endif
  require_cpu("silu_mul", {&gate, &up, &out});
  cpu::silu_mul(gate, up, out);
}

void softmax(Tensor& x) {
  require_cpu("softmax", {&x});
  cpu::softmax(x);
}

std::vector<int32_t> argmax(const Tensor& logits) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&logits})) return gpu::argmax(logits);
#endif
  require_cpu("argmax", {&logits});
  return cpu::argmax(logits);
}

void kv_append(const Tensor& k, const Tensor& v, std::span<const int32_t> slots, Tensor& k_cache,
               Tensor& v_cache) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&k, &v, &k_cache, &v_cache}))
    return gpu::kv_append(k, v, slots, k_cache, v_cache);
#endif
  require_cpu("kv_append", {&k, &v, &k_cache, &v_cache});
  cpu::kv_append(k, v, slots, k_cache, v_cache);
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, const AttentionParams& p, Tensor& out) {
#if TESSERA_HAVE_CUDA
  if (gpu::any_cuda({&q, &k_cache, &v_cache, &out}))
    return gpu::paged_attention(q, k_cache, v_cache, batch, p, out);
#endif
  require_cpu("paged_attention", {&q, &k_cache, &v_cache, &out});
  cpu::paged_attention(q, k_cache, v_cache, batch, p, out);
}

}  // namespace tessera::ops
