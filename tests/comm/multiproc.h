// Test harness: runs one function per rank in forked child processes, so that the real engines
// are tested across real processes and sockets. The parent (which runs the StoreServer) collects
// each child's result through a pipe, bounds the whole run by a time limit, and always kills and
// reaps its children, so a broken communicator fails the test instead of hanging it.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tessera/comm/groups.h"
#include "tessera/core/error.h"

namespace tessera::comm::testing {

struct RankOutcome {
  bool ok = false;      // fn returned normally
  std::string payload;  // what fn returned
  bool threw = false;   // fn threw a tessera::Error
  ErrorCode code = ErrorCode::kInternal;
  std::string error;      // its message (or another exception's what())
  bool signaled = false;  // the child died of a signal
  int signal = 0;
  bool timed_out = false;  // the parent killed it at the time limit
};

namespace detail {
inline void write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w <= 0) return;
    c += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace detail

// Forks one child per rank 0..n-1 and runs fn(rank) in it. Children end with _exit, so no test
// state is torn down twice.
inline std::vector<RankOutcome> run_ranks(int n, const std::function<std::string(int)>& fn,
                                          double limit_seconds = 30.0) {
  std::vector<pid_t> pids(static_cast<size_t>(n), -1);
  std::vector<int> fds(static_cast<size_t>(n), -1);
  std::vector<RankOutcome> out(static_cast<size_t>(n));
  std::vector<std::string> raw(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    int p[2];
    if (::pipe(p) != 0) break;
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(p[0]);
      std::string msg;
      try {
        std::string res = fn(r);
        msg.reserve(res.size() + 1);
        msg.push_back('O');
        msg.append(res);
      } catch (const Error& e) {
        const int code = static_cast<int>(e.code());
        msg.push_back('E');
        msg.append(reinterpret_cast<const char*>(&code), sizeof(code));
        msg.append(e.what());
      } catch (const std::exception& e) {
        msg.push_back('X');
        msg.append(e.what());
      }
      detail::write_all(p[1], msg.data(), msg.size());
      ::_exit(0);
    }
    ::close(p[1]);
    pids[static_cast<size_t>(r)] = pid;
    fds[static_cast<size_t>(r)] = p[0];
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(limit_seconds));
  bool expired = false;
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<int> who;
    for (int r = 0; r < n; ++r)
      if (fds[static_cast<size_t>(r)] >= 0) {
        pfds.push_back({fds[static_cast<size_t>(r)], POLLIN, 0});
        who.push_back(r);
      }
    if (pfds.empty()) break;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
    if (ms <= 0) {
      expired = true;
      break;
    }
    if (::poll(pfds.data(), pfds.size(), static_cast<int>(ms)) < 0) continue;
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!pfds[i].revents) continue;
      char buf[65536];
      const ssize_t got = ::read(pfds[i].fd, buf, sizeof(buf));
      const auto r = static_cast<size_t>(who[i]);
      if (got > 0) {
        raw[r].append(buf, static_cast<size_t>(got));
      } else {
        ::close(fds[r]);
        fds[r] = -1;
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    const auto i = static_cast<size_t>(r);
    if (fds[i] >= 0) {
      ::close(fds[i]);
      out[i].timed_out = true;
    }
    if (pids[i] <= 0) continue;
    if (expired) ::kill(pids[i], SIGKILL);
    int status = 0;
    // A child that has written its result exits at once; give it a moment, then insist.
    for (int tries = 0; ::waitpid(pids[i], &status, WNOHANG) == 0; ++tries) {
      if (tries == 200) ::kill(pids[i], SIGKILL);
      ::usleep(10000);
    }
    if (WIFSIGNALED(status)) {
      out[i].signaled = true;
      out[i].signal = WTERMSIG(status);
    }
    const std::string& m = raw[i];
    if (m.empty()) continue;
    if (m[0] == 'O') {
      out[i].ok = true;
      out[i].payload = m.substr(1);
    } else if (m[0] == 'E' && m.size() >= 1 + sizeof(int)) {
      int code;
      std::memcpy(&code, m.data() + 1, sizeof(code));
      out[i].threw = true;
      out[i].code = static_cast<ErrorCode>(code);
      out[i].error = m.substr(1 + sizeof(int));
    } else {
      out[i].error = m.substr(1);
    }
  }
  return out;
}

// A readable account of one outcome, for assertion messages.
inline std::string describe(const RankOutcome& o) {
  if (o.ok) return "ok";
  if (o.timed_out) return "killed at the time limit";
  if (o.threw) return std::string(error_code_name(o.code)) + ": " + o.error;
  if (o.signaled) return "died of signal " + std::to_string(o.signal);
  return "failed: " + o.error;
}

// In a child: a store connection and a Gloo communicator for `rank` of group `name`.
struct GlooRank {
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm;
};
inline GlooRank gloo_rank(int port, const std::string& name, int rank, int size,
                          double timeout_seconds = 10.0) {
  GlooRank g;
  g.store = std::make_unique<StoreClient>(
      StoreClientParams{.host = "127.0.0.1", .port = port, .connect_timeout_seconds = 10.0});
  g.comm = make_gloo_communicator({.name = name,
                                   .rank = rank,
                                   .size = size,
                                   .timeout_seconds = timeout_seconds,
                                   .store = g.store.get()});
  return g;
}

template <typename T>
std::string bytes_of(const T* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n * sizeof(T));
}

}  // namespace tessera::comm::testing
