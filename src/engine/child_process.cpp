#include "child_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <chrono>
#include <cstring>
#include <thread>

#include "tessera/core/error.h"

extern char** environ;

namespace tessera::engine {

pid_t spawn_child(const std::vector<std::string>& args,
                  const std::vector<std::string>& extra_env) {
  std::vector<std::string> a = args, env = extra_env;
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  for (char** e = environ; *e; ++e) {
    const std::string_view kv(*e);
    const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& x) {
      return kv.substr(0, kv.find('=') + 1) == std::string_view(x).substr(0, x.find('=') + 1);
    });
    if (!replaced) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, a[0].c_str(), nullptr, nullptr, argv.data(), envp.data());
  if (rc != 0)
    fail(ErrorCode::kInternal, "cannot start worker process '", a[0], "': ", std::strerror(rc));
  return pid;
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (int n : v) s += (s.empty() ? "" : ",") + std::to_string(n);
  return s;
}

size_t kv_cache_mb(size_t bytes) { return (bytes + (size_t{1} << 20) - 1) >> 20; }

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

bool try_reap(pid_t pid, int& status) { return pid > 0 && ::waitpid(pid, &status, WNOHANG) == pid; }

std::vector<int> stop_children(const std::vector<pid_t>& pids, double grace_seconds) {
  using Clock = std::chrono::steady_clock;
  std::vector<int> status(pids.size(), 0);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(grace_seconds));
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < pids.size(); ++i) {
      if (!done[i]) done[i] = pids[i] <= 0 || try_reap(pids[i], status[i]);
      all = all && done[i];
    }
    if (all || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (done[i]) continue;
    ::kill(pids[i], SIGKILL);
    ::kill(pids[i], SIGCONT);  // a stopped (SIGSTOP) child must run to die
    while (::waitpid(pids[i], &status[i], 0) < 0 && errno == EINTR) {
    }
  }
  return status;
}

}  // namespace tessera::engine
