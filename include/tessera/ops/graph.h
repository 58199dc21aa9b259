// DeviceGraph: a piece of device work recorded once and replayed, so a decode step costs one
// launch instead of hundreds (CUDA graphs). The work is a callable that enqueues ops on tensors of
// one allocator; it must not read device memory back, copy from the host or depend on anything
// that changes between replays except the contents of buffers it reads (the caller updates those
// in place before each replay: model/decode_graphs.h).
//
// On CUDA the callable runs once under stream capture of the allocator's stream (relaxed mode),
// its allocations come from a pool private to the graph (cuda_allocator.h), and replay() launches
// the instantiated graph on the stream. Elsewhere (the CPU, the guarded device) replay() runs the
// callable again, so the code around a graph is exercised, and tested, on every backend.
// Owns the graph, its executable and its pool (returned to the allocator when destroyed).
#pragma once

#include <functional>
#include <memory>

#include "tessera/core/allocator.h"

namespace tessera::ops {

class DeviceGraph {
 public:
  // True where replay() launches a recorded graph (a CUDA allocator in a CUDA build).
  static bool records(const Allocator& allocator);
  // Runs `work` once (recording it where records()); throws kInternal naming the CUDA call that
  // failed (the stream is left usable: the capture is ended either way).
  DeviceGraph(std::shared_ptr<Allocator> allocator, std::function<void()> work);
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;
  // Enqueues the work again on the allocator's stream (returns without waiting on CUDA).
  void replay() const;
  bool recorded() const { return state_ != nullptr; }

 private:
  struct State;  // CUDA: the graph, its executable and its pool
  std::shared_ptr<Allocator> allocator_;
  std::function<void()> work_;  // kept for devices that re-run it
  std::unique_ptr<State> state_;
};

}  // namespace tessera::ops
