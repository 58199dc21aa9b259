#include "tessera/kv_cache/kv_pool.h"

#include "tessera/core/error.h"

namespace tessera::kv_cache {

KvPool::KvPool(const KvPoolParams& p, std::shared_ptr<Allocator> device,
               const ProgressFn& progress)
    : params_(p) {
  if (!device) device = default_allocator(p.device);
  params_.device = device->device();
  if (p.num_layers <= 0 || p.num_blocks <= 0 || p.block_size <= 0 || p.num_kv_heads <= 0 ||
      p.head_dim <= 0)
    fail(ErrorCode::kInvalidArgument, "bad KV pool shape: layers ", p.num_layers, " blocks ",
         p.num_blocks, " block_size ", p.block_size, " kv_heads ", p.num_kv_heads, " head_dim ",
         p.head_dim);
  const Shape shape{p.num_blocks, p.block_size, p.num_kv_heads, p.head_dim};
  uint64_t per_tensor = sizeof(float);
  for (int64_t d : shape) per_tensor *= static_cast<uint64_t>(d);
  const uint64_t total = 2ull * static_cast<uint64_t>(p.num_layers) * per_tensor;
  uint64_t done = 0;
  for (int l = 0; l < p.num_layers; ++l) {
    k_.push_back(Tensor::empty(shape, DType::kF32, device));
    v_.push_back(Tensor::empty(shape, DType::kF32, device));
    done += k_.back().nbytes() + v_.back().nbytes();
    if (progress) progress(done, total);
  }
}

size_t KvPool::bytes() const {
  size_t b = 0;
  for (size_t i = 0; i < k_.size(); ++i) b += k_[i].nbytes() + v_[i].nbytes();
  return b;
}

int KvPool::blocks_for_budget(const KvPoolParams& s, size_t budget_bytes) {
  const size_t per_block = 2ull * static_cast<size_t>(s.num_layers) * static_cast<size_t>(s.block_size) *
                           static_cast<size_t>(s.num_kv_heads) * static_cast<size_t>(s.head_dim) *
                           sizeof(float);
  return per_block ? static_cast<int>(budget_bytes / per_block) : 0;
}

}  // namespace tessera::kv_cache
