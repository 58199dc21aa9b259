#include "tessera/engine/executor.h"

namespace tessera::engine {

LocalExecutor::LocalExecutor(const worker::WorkerParams& p)
    : worker_(std::make_unique<worker::Worker>(p)) {
  const auto& mc = worker_->config();
  info_ = ExecutorInfo{.vocab_size = mc.vocab_size,
                       .max_position = mc.max_position,
                       .num_layers = mc.num_layers,
                       .num_blocks = worker_->num_blocks(),
                       .block_size = worker_->block_size()};
}

protocol::ExecuteResult LocalExecutor::execute(const protocol::ExecutePlan& plan) {
  return worker_->execute(plan);
}

}  // namespace tessera::engine
