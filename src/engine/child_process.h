// Starting and stopping the engine's child processes (`tessera worker`), shared by the
// WorkerGroupExecutor and the node agent. No state: callers own the pids.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace tessera::engine {

// posix_spawn of args[0] with args, this process's environment and extra_env ("NAME=value",
// which take precedence). Throws kInternal.
pid_t spawn_child(const std::vector<std::string>& args,
                  const std::vector<std::string>& extra_env = {});
// "3,27": list arguments of the worker command line (and the layout fingerprint).
std::string join_ints(const std::vector<int>& v);
// The worker's --kv-cache-mb: the byte budget rounded up to whole MiB.
size_t kv_cache_mb(size_t bytes);
// "exited with status 1", "was killed by signal 9".
std::string describe_exit(int wait_status);
// Non-blocking reap: true (and the status) once the child has exited.
bool try_reap(pid_t pid, int& wait_status);
// Waits up to grace_seconds for each child to exit by itself, then SIGKILLs and reaps the rest.
// Returns each child's wait status, in order.
std::vector<int> stop_children(const std::vector<pid_t>& pids, double grace_seconds);

}  // namespace tessera::engine
