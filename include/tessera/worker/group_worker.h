// One rank of a worker group (`tessera worker --group ...`): the process that owns one device's
// shard of the model. It registers with the coordinator's rendezvous store, waits until every rank
// has registered the same model and layout, connects its TP and PP communicators (Gloo or NCCL),
// cuts its shard out of the mapped weights, then connects to the engine's control port, says
// Hello (with its rank and memory) and serves ExecutePlan frames until Shutdown or until the
// engine goes away. A heartbeat thread sends a Heartbeat frame every few seconds so the engine can
// tell a hung rank from a slow step. The store and the control connection both ask for the
// group's secret first. Everything it owns lives on run_group_worker's stack.
#pragma once

#include <string>

#include "tessera/worker/worker.h"

namespace tessera::worker {

struct GroupWorkerArgs {
  WorkerParams worker;  // model, KV sizing; shard is filled from the layout below
  int rank = 0;         // world rank = stage * (expert * tensor) + ep_rank * tensor + tp_rank
  int tensor = 1;
  int pipeline = 1;
  int expert = 1;                // expert parallelism: EP ranks per stage
  std::vector<int> layer_split;  // empty: even
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  std::string group_id;       // prefix of every store key of this incarnation of the group
  std::string comm = "gloo";  // gloo | nccl
  std::string bind_host = "127.0.0.1";
  std::string fingerprint;  // the launcher's view of model + layout; all ranks must agree
  double connect_timeout_seconds = 120.0;
  double collective_timeout_seconds = 30.0;
  double heartbeat_seconds = 1.0;
  // The group's secret (from kGroupSecretEnv): presented to the store and, first, on the control
  // connection; the coordinator refuses peers without it.
  std::string secret;
};

// The environment variable a rank reads its group's secret from (not the command line, which
// every local user can read in /proc).
inline constexpr const char* kGroupSecretEnv = "TESSERA_GROUP_SECRET";

// Returns the process exit code: 0 after Shutdown or when the engine closes the connection, 1 when
// setup fails (the reason is logged and stored under "<group_id>/error/<rank>"), 3 when a
// collective failed (the group is broken: the engine restarts it).
int run_group_worker(const GroupWorkerArgs& args);

// The store keys both sides use.
std::string register_key(const std::string& group_id, int rank);
std::string error_key(const std::string& group_id, int rank);
std::string go_key(const std::string& group_id);
std::string control_key(const std::string& group_id);

}  // namespace tessera::worker
