#include "tessera/kv_cache/kv_pool.h"

#include "tessera/core/error.h"

namespace tessera::kv_cache {

KvPool::KvPool(const KvPoolParams& p, std::shared_ptr<Allocator> device, const ProgressFn& progress)
    : params_(p) {
  if (!device) device = default_allocator(p.device);
  params_.device = device->device();
  if (p.num_layers <= 0 || p.num_blocks <= 0 || p.block_size <= 0 || p.num_kv_heads <= 0 ||
      p.head_dim <= 0)
    fail(ErrorCode::kInvalidArgument, "bad KV pool shape: layers ", p.num_layers, " blocks ",
         p.num_blocks, " block_size ", p.block_size, " kv_heads ", p.num_kv_heads, " head_dim ",
         p.head_dim);
  if (p.dtype != DType::kF32 && p.dtype != DType::kF16 && p.dtype != DType::kBF16)
    fail(ErrorCode::kInvalidArgument, "KV cache dtype must be f32, f16 or bf16, got ",
         dtype_name(p.dtype));
  const Shape shape{p.num_blocks, p.block_size, p.num_kv_heads, p.head_dim};
  auto per_tensor = static_cast<uint64_t>(dtype_info(p.dtype).block_bytes);
  for (int64_t d : shape) per_tensor *= static_cast<uint64_t>(d);
  const uint64_t total = 2ull * static_cast<uint64_t>(p.num_layers) * per_tensor;
  uint64_t done = 0;
  for (int l = 0; l < p.num_layers; ++l) {
    k_.push_back(Tensor::empty(shape, p.dtype, device));
    v_.push_back(Tensor::empty(shape, p.dtype, device));
    done += k_.back().nbytes() + v_.back().nbytes();
    if (progress) progress(done, total);
  }
}

size_t KvPool::bytes() const {
  size_t b = 0;
  for (size_t i = 0; i < k_.size(); ++i) b += k_[i].nbytes() + v_[i].nbytes();
  return b;
}

DType parse_kv_dtype(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  fail(ErrorCode::kInvalidArgument, "KV cache dtype '", name, "': expected f32, f16 or bf16");
}

int KvPool::blocks_for_budget(const KvPoolParams& s, size_t budget_bytes) {
  const size_t per_block = 2ull * static_cast<size_t>(s.num_layers) *
                           static_cast<size_t>(s.block_size) * static_cast<size_t>(s.num_kv_heads) *
                           static_cast<size_t>(s.head_dim) *
                           static_cast<size_t>(dtype_info(s.dtype).block_bytes);
  return per_block ? static_cast<int>(budget_bytes / per_block) : 0;
}

}  // namespace tessera::kv_cache
