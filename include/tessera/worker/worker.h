// Worker: runs the model for an ExecutePlan and samples. It owns the model (weights mapped from
// the file), its KV pool and one Sampler per live sequence. Today one worker runs in the engine's
// process (LocalExecutor); the worker-group issue puts one per device in its own process behind
// the same ExecutePlan/ExecuteResult boundary. Single-threaded: the engine thread calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/llama.h"
#include "tessera/model/weights.h"
#include "tessera/protocol/step.h"
#include "tessera/sampling/sampler.h"

namespace tessera::worker {

struct WorkerParams {
  std::string model_path;
  int num_blocks = 0;  // 0: sized from kv_cache_bytes
  int block_size = 16;
  size_t kv_cache_bytes = size_t{256} << 20;
};

class Worker {
 public:
  explicit Worker(const WorkerParams& p);
  const model::ModelConfig& config() const { return model_->config(); }
  int num_blocks() const { return pool_->params().num_blocks; }
  int block_size() const { return pool_->params().block_size; }

  // Runs one step. Throws tessera::Error when the plan is inconsistent (unknown sequence,
  // token outside the vocabulary, slot outside the cache); the worker's state stays usable.
  protocol::ExecuteResult execute(const protocol::ExecutePlan& plan);
  size_t live_sequences() const { return samplers_.size(); }

 private:
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<model::LlamaModel> model_;
  std::unique_ptr<kv_cache::KvPool> pool_;
  std::unordered_map<uint64_t, sampling::Sampler> samplers_;
};

}  // namespace tessera::worker
