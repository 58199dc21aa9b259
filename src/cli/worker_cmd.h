// `tessera worker`: one rank of a worker group, the child side of a WorkerGroupExecutor (internal;
// started by the engine or a node agent).
#pragma once

#include <string>
#include <vector>

namespace tessera::cli {

int cmd_worker(const std::vector<std::string>& args);

}  // namespace tessera::cli
