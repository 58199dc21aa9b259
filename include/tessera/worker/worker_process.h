// The child side of a worker process: owns one Worker and serves ExecutePlan frames read from a
// socket (the engine's ProcessExecutor holds the other end) until Shutdown or EOF. The `tessera
// worker` subcommand calls run_worker_process; everything it owns lives on its stack.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "tessera/protocol/codec.h"
#include "tessera/worker/worker.h"

namespace tessera::worker {

// The plan loop of both kinds of worker process: read a frame, execute the plan, answer with a
// Result frame or an Error frame (the step failed, the worker keeps serving), until Shutdown or
// until the engine goes away. `send` writes one whole frame (a group rank's shares a lock with its
// heartbeats). Returns 0, or 3 after a collective failure: a broken group is not repaired here.
using FrameSender = std::function<void(protocol::FrameType, std::span<const uint8_t>)>;
int serve_plans(Worker& w, int fd, const FrameSender& send, const std::string& who);

struct WorkerProcessArgs {
  WorkerParams worker;
  int fd = -1;  // connected stream socket to the engine
};

// Loads the model and sends Hello (or an Error frame when loading throws, then returns 1), then
// loops: read plan -> execute -> write result. A step that throws answers with an Error frame
// and the worker keeps serving. Returns 0 on Shutdown or when the engine closes the socket.
int run_worker_process(const WorkerProcessArgs& args);

}  // namespace tessera::worker
