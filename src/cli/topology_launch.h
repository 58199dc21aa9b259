// From a topology YAML (`--config FILE`) to what the launcher runs: the engine's configuration
// with its worker group (node 0, the coordinator) or this node's share of the ranks (node R > 0).
// The file is parsed and validated against the model's heads and layers before anything starts.
#pragma once

#include <string>

#include "tessera/config/topology.h"
#include "tessera/engine/llm_engine.h"

namespace tessera::cli {

struct Launch {
  config::TopologyConfig topo;
  engine::EngineConfig engine;  // engine.group is this node's view of the worker group
};

// Throws tessera::Error naming the file, line and key when the config or the layout is invalid.
Launch launch_from_config(const std::string& path, int node_rank);

// Node R > 0: runs this node's ranks under the coordinator until SIGTERM/SIGINT (blocked by the
// caller, waited for here). Returns the exit code.
int run_worker_node(const Launch& l, int node_rank);

}  // namespace tessera::cli
