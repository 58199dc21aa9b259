// KvPool: the paged KV cache memory of one worker, one K and one V tensor per layer, each
// [num_blocks, block_size, num_kv_heads, head_dim] of the pool's dtype (F32, or F16 / BF16 for
// half the memory: the ops round what they store, see src/ops/kv_rows.h). The worker (or a local
// runner) owns it; which blocks belong to which sequence is the BlockAllocator's business, not the
// pool's.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "tessera/core/dtype.h"
#include "tessera/core/progress.h"
#include "tessera/core/tensor.h"

namespace tessera::kv_cache {

struct KvPoolParams {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;  // F32, F16 or BF16
  Device device = Device::cpu();
};

// "f32", "f16", "bf16" (dtype_name's spelling) -> the KV cache dtype; kInvalidArgument naming the
// choices otherwise.
DType parse_kv_dtype(std::string_view name);

class KvPool {
 public:
  // The pool lives on `device`'s memory (null: default_allocator(p.device)). `progress`
  // (optional) is told the bytes allocated so far of the pool's total.
  explicit KvPool(const KvPoolParams& p, std::shared_ptr<Allocator> device = nullptr,
                  const ProgressFn& progress = {});
  const KvPoolParams& params() const { return params_; }
  Tensor& k(int layer) { return k_.at(static_cast<size_t>(layer)); }
  Tensor& v(int layer) { return v_.at(static_cast<size_t>(layer)); }
  size_t bytes() const;
  // Blocks that fit in `budget_bytes` for this shape (what a pool may be sized to).
  static int blocks_for_budget(const KvPoolParams& shape, size_t budget_bytes);

 private:
  KvPoolParams params_;
  std::vector<Tensor> k_, v_;
};

}  // namespace tessera::kv_cache
