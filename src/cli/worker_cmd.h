// `tessera worker`: one rank of a worker group, the child side of a WorkerGroupExecutor (internal;
// started by the engine or a node agent, hidden from `tessera --help`).
#pragma once

#include "cli_app.h"

namespace tessera::cli {

Command add_worker(CLI::App& root);

}  // namespace tessera::cli
