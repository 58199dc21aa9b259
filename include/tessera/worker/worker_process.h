// The child side of a worker process: owns one Worker and serves ExecutePlan frames read from a
// socket (the engine's ProcessExecutor holds the other end) until Shutdown or EOF. The `tessera
// worker` subcommand calls run_worker_process; everything it owns lives on its stack.
#pragma once

#include "tessera/worker/worker.h"

namespace tessera::worker {

struct WorkerProcessArgs {
  WorkerParams worker;
  int fd = -1;  // connected stream socket to the engine
};

// Loads the model and sends Hello (or an Error frame when loading throws, then returns 1), then
// loops: read plan -> execute -> write result. A step that throws answers with an Error frame
// and the worker keeps serving. Returns 0 on Shutdown or when the engine closes the socket.
int run_worker_process(const WorkerProcessArgs& args);

}  // namespace tessera::worker
