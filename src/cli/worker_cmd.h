// `tessera worker`: the child side of a ProcessExecutor (internal; started by the engine).
#pragma once

#include <string>
#include <vector>

namespace tessera::cli {

int cmd_worker(const std::vector<std::string>& args);

}  // namespace tessera::cli
