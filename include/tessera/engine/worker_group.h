// WorkerGroupExecutor: the engine's side of a T x P worker group, one `tessera worker` process per
// device; a single worker (`serve --model`) is a group of 1 x 1. It is the coordinator: it runs
// the rendezvous store, spawns this node's ranks, checks that every rank registered the same model
// and layout before letting them connect their communicators, and accepts each rank's control
// connection (TCP, so ranks on other nodes join the same way). Each step's plan is encoded once
// and written to every rank over its persistent connection; every rank answers (only the output
// rank, TP 0 of the last stage, with sampled tokens). Up to `pipeline` plans are kept in flight so
// that the stages work at once.
//
// Faults: a rank that exits, closes its connection, reports a collective failure, or sends
// nothing (not even a heartbeat) for heartbeat_timeout_seconds marks the whole group dead: all its
// processes are stopped and the engine builds a new group (a new group id, so no stale key or
// connection of the old one is reused).
//
// Trust: the store and the control port accept only peers that present the group's secret
// (passed to local ranks in their environment, never on the command line); a control connection
// whose first frame is not Auth with the secret is logged and closed.
//
// Ownership: the engine thread owns the executor; the executor owns the store, the listener, the
// connections and the local child processes, and stops them all in its destructor.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "tessera/comm/rendezvous.h"
#include "tessera/engine/executor.h"
#include "tessera/protocol/codec.h"

namespace tessera::engine {

struct WorkerGroupParams {
  std::string executable;       // the tessera binary, run as `<executable> worker ...`
  worker::WorkerParams worker;  // model path and KV sizing per rank
  int tensor = 1;
  int pipeline = 1;
  int expert = 1;                // expert-parallel ranks per stage (MoE models)
  std::vector<int> layer_split;  // empty: even
  std::vector<int> local_ranks;  // ranks this process spawns; empty: all of them
  std::vector<int> devices;      // device id per local rank (CUDA_VISIBLE_DEVICES for cuda)
  std::string backend = "cpu";   // cpu (Gloo) | cuda (NCCL) | guarded (Gloo; the test device)
  std::string store_host = "127.0.0.1";
  int store_port = 0;                      // 0: any free port
  std::string control_host = "127.0.0.1";  // where ranks reach the engine
  std::string bind_host;                   // this node's address for Gloo pairs ("" = control_host)
  int threads_per_rank = 0;  // cpu: op threads per rank (0: cores / local ranks, at least 1)
  double start_timeout_seconds = 180.0;
  double step_timeout_seconds = 300.0;
  double collective_timeout_seconds = 30.0;
  double heartbeat_seconds = 1.0;
  double heartbeat_timeout_seconds = 10.0;
  double shutdown_grace_seconds = 3.0;
  int max_in_flight = 0;  // 0: pipeline (one micro-batch per stage)
  // What every peer of the store and the control port must present. Empty: a fresh random one
  // per executor (enough when every rank is local); several nodes share one the operator sets.
  std::string secret;
};

struct RankInfo {
  int rank = 0;
  pid_t pid = -1;  // -1 for a rank of another node
  int fd = -1;
  protocol::WorkerHello hello;
};

class WorkerGroupExecutor final : public Executor {
 public:
  // Starts the group and waits until every rank said Hello. Throws Error naming the rank and its
  // own message when a rank fails to load, exits or does not join in time.
  explicit WorkerGroupExecutor(const WorkerGroupParams& p);
  ~WorkerGroupExecutor() override;
  WorkerGroupExecutor(const WorkerGroupExecutor&) = delete;
  WorkerGroupExecutor& operator=(const WorkerGroupExecutor&) = delete;

  const ExecutorInfo& info() const override { return info_; }
  bool alive() const override { return alive_; }
  int max_in_flight() const override { return max_in_flight_; }
  void submit(const protocol::ExecutePlan& plan) override;
  protocol::ExecuteResult collect() override;
  bool check_alive() override;
  std::string failure() const override { return failure_; }

  const std::vector<RankInfo>& ranks() const { return ranks_; }
  const std::string& group_id() const { return group_id_; }
  int store_port() const;

 private:
  void spawn_local(int rank, int local_index);
  void await_registrations(const std::string& fingerprint);
  void accept_ranks();
  bool authenticate(int fd);  // reads the Auth frame; logs and returns false for a stranger
  [[noreturn]] void lost(const std::string& what);
  void stop_all(double grace_seconds);  // Shutdown, then SIGKILL whoever is left after the grace
  std::string rank_status(const RankInfo& r);
  // `why` (a surviving rank's collective failure) led by the status of every local rank that has
  // exited, waiting up to 200 ms for one to be reaped: a killed rank's peers often report their
  // broken collective a moment before its own connection closes, and the dead rank is the cause.
  std::string with_dead_ranks(const std::string& why);

  WorkerGroupParams params_;
  ExecutorInfo info_;
  std::string group_id_;
  std::unique_ptr<comm::StoreServer> store_;
  int listen_fd_ = -1;
  std::vector<RankInfo> ranks_;                               // by world rank
  std::vector<std::chrono::steady_clock::time_point> heard_;  // last frame from each rank
  std::string failure_;
  int output_rank_ = 0;
  int max_in_flight_ = 1;
  size_t pending_ = 0;
  bool alive_ = false;
};

// The store key naming the group incarnation that ranks should join now.
inline constexpr const char* kCurrentGroupKey = "current_group";
// What every rank registers besides its model: the layout it was launched with.
std::string group_fingerprint(const WorkerGroupParams& p);
// The `tessera worker --group ...` command line of one rank.
std::vector<std::string> worker_command(const WorkerGroupParams& p, int rank, int local_index,
                                        const std::string& group_id, const std::string& store_addr);

// A node other than the coordinator's (`tessera serve --config F --node-rank R`, R > 0): waits for
// the coordinator's store, spawns this node's ranks (p.local_ranks) into the current group, and
// when that group ends (a rank exits, or the coordinator starts a new incarnation or goes away)
// stops them and follows the next one. Returns when `stop` becomes true (checked every 100 ms).
int run_node_agent(const WorkerGroupParams& p, const std::atomic<bool>& stop);

}  // namespace tessera::engine
