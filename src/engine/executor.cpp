#include "tessera/engine/executor.h"

#include "tessera/core/error.h"

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

protocol::ExecuteResult LocalExecutor::run(const protocol::ExecutePlan& plan) {
  return worker_->execute(plan);
}

}  // namespace tessera::engine

namespace tessera::engine {

void SyncExecutor::submit(const protocol::ExecutePlan& plan) {
  Done d;
  try {
    d.result = run(plan);
  } catch (...) {
    d.error = std::current_exception();
  }
  queued_.push_back(std::move(d));
}

protocol::ExecuteResult SyncExecutor::collect() {
  if (queued_.empty()) fail(ErrorCode::kInternal, "collect() with no plan in flight");
  Done d = std::move(queued_.front());
  queued_.pop_front();
  if (d.error) std::rethrow_exception(d.error);
  return std::move(d.result);
}

}  // namespace tessera::engine
