// Executor: where the engine's steps run. The engine thread owns its Executor and hands it plans
// in order: submit() up to max_in_flight() of them, collect() their results oldest first.
// WorkerGroupExecutor (worker_group.h) runs the worker processes of any T x P layout, 1 x 1
// included, so a crash in the model code costs a step, not the server; LocalExecutor runs one
// Worker inside the engine's process (tests and in-process tools).
#pragma once

#include <deque>
#include <exception>
#include <memory>
#include <string>

#include "tessera/protocol/codec.h"
#include "tessera/protocol/step.h"
#include "tessera/worker/worker.h"

namespace tessera::engine {

struct ExecutorInfo {
  int vocab_size = 0;
  int max_position = 0;
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 0;
  int world_size = 1;                        // ranks in the group
  std::string layout = "1 rank";             // for logs: "TP=3 x PP=2 over gloo"
  std::vector<protocol::WorkerHello> ranks;  // per rank of a group: memory as each reported it
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual const ExecutorInfo& info() const = 0;
  // False once a worker died, hung or broke the protocol: every later call throws.
  virtual bool alive() const = 0;
  // Between steps (the engine is idle): notices workers that died or hung meanwhile, so that
  // readiness turns false and the engine restarts them before a request pays for it. Returns
  // alive(); failure() then says why.
  virtual bool check_alive() { return alive(); }
  virtual std::string failure() const { return {}; }

  // Up to max_in_flight() plans may be submitted before the first is collected (pipeline
  // parallelism: one micro-batch per stage); collect() returns the oldest one's result or throws
  // tessera::Error for that step. The caller counts what it submitted (the engine's scheduler
  // does: its flights are the one record of plans in flight).
  virtual int max_in_flight() const { return 1; }
  virtual void submit(const protocol::ExecutePlan& plan) = 0;
  virtual protocol::ExecuteResult collect() = 0;
  // One plan, start to finish.
  protocol::ExecuteResult execute(const protocol::ExecutePlan& plan) {
    submit(plan);
    return collect();
  }
};

// An executor that runs each plan when it is submitted (in this process) and hands the results
// back in order; subclasses implement run().
class SyncExecutor : public Executor {
 public:
  void submit(const protocol::ExecutePlan& plan) final;
  protocol::ExecuteResult collect() final;

 protected:
  virtual protocol::ExecuteResult run(const protocol::ExecutePlan& plan) = 0;

 private:
  struct Done {
    protocol::ExecuteResult result;
    std::exception_ptr error;
  };
  std::deque<Done> queued_;
};

class LocalExecutor final : public SyncExecutor {
 public:
  explicit LocalExecutor(const worker::WorkerParams& p);
  const ExecutorInfo& info() const override { return info_; }
  bool alive() const override { return true; }

 protected:
  protocol::ExecuteResult run(const protocol::ExecutePlan& plan) override;

 private:
  std::unique_ptr<worker::Worker> worker_;
  ExecutorInfo info_;
};

}  // namespace tessera::engine
