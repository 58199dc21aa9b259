// Executor: where the engine's steps run. The engine thread owns its Executor and calls it one
// step at a time. LocalExecutor runs a Worker in the engine's process; ProcessExecutor runs it in
// a child process (`tessera worker ...`) and talks ExecutePlan/ExecuteResult frames over a
// socketpair, so a crash in the model code costs the step, not the server.
#pragma once

#include <sys/types.h>

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
  // Runs one step. Throws tessera::Error when the step fails; when alive() turns false the
  // executor is unusable and every later call throws.
  virtual protocol::ExecuteResult execute(const protocol::ExecutePlan& plan) = 0;
  virtual const ExecutorInfo& info() const = 0;
  virtual bool alive() const = 0;
  // Between steps (the engine is idle): notices workers that died or hung meanwhile, so that
  // readiness turns false and the engine restarts them before a request pays for it. Returns
  // alive(); failure() then says why.
  virtual bool check_alive() { return alive(); }
  virtual std::string failure() const { return {}; }

  // Pipelined use: up to max_in_flight() plans may be submitted before the first is collected;
  // collect() returns their results in submission order (or throws as execute() does). The
  // default runs each plan at submit() time.
  virtual int max_in_flight() const { return 1; }
  virtual void submit(const protocol::ExecutePlan& plan);
  virtual protocol::ExecuteResult collect();
  virtual size_t in_flight() const { return queued_.size(); }

 private:
  struct Done {
    protocol::ExecuteResult result;
    std::exception_ptr error;
  };
  std::deque<Done> queued_;
};

class LocalExecutor final : public Executor {
 public:
  explicit LocalExecutor(const worker::WorkerParams& p);
  protocol::ExecuteResult execute(const protocol::ExecutePlan& plan) override;
  const ExecutorInfo& info() const override { return info_; }
  bool alive() const override { return true; }

 private:
  std::unique_ptr<worker::Worker> worker_;
  ExecutorInfo info_;
};

struct ProcessExecutorParams {
  std::string executable;  // the tessera binary; run as `<executable> worker --model ...`
  worker::WorkerParams worker;
  double start_timeout_seconds = 120.0;  // loading the model
  double step_timeout_seconds = 300.0;   // one execute()
  double shutdown_grace_seconds = 2.0;   // after Shutdown, before SIGKILL
};

class ProcessExecutor final : public Executor {
 public:
  // Spawns the worker and waits for its Hello. Throws Error naming the model when the worker
  // fails to load (with the worker's own message), exits or does not answer in time.
  explicit ProcessExecutor(const ProcessExecutorParams& p);
  ~ProcessExecutor() override;
  ProcessExecutor(const ProcessExecutor&) = delete;
  ProcessExecutor& operator=(const ProcessExecutor&) = delete;

  protocol::ExecuteResult execute(const protocol::ExecutePlan& plan) override;
  const ExecutorInfo& info() const override { return info_; }
  bool alive() const override { return alive_; }
  bool check_alive() override;
  std::string failure() const override { return failure_; }
  pid_t pid() const { return pid_; }

 private:
  [[noreturn]] void lost(const std::string& what);  // marks dead, reaps, throws kInternal
  std::string exit_description();                   // "exited with status 1", "killed by signal 9"
  void stop_child();

  ProcessExecutorParams params_;
  ExecutorInfo info_;
  pid_t pid_ = -1;
  int fd_ = -1;
  bool alive_ = false;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::string failure_;
};

}  // namespace tessera::engine
