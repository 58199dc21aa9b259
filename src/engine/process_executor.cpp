// ProcessExecutor: spawns `tessera worker` on one end of a socketpair and exchanges frames.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "child_process.h"
#include "tessera/core/error.h"
#include "tessera/engine/executor.h"
#include "tessera/protocol/codec.h"
#include "tessera/protocol/frame_io.h"

namespace tessera::engine {
namespace {

using protocol::FrameType;
using protocol::ReadStatus;

// The worker's socket end is moved to a descriptor number of our choosing in the child.
pid_t spawn_worker(const ProcessExecutorParams& p, int child_end, int child_fd) {
  const size_t kv_mb = kv_cache_mb(p.worker.kv_cache_bytes);
  return spawn_child(
      {p.executable, "worker", "--model", p.worker.model_path, "--num-blocks",
       std::to_string(p.worker.num_blocks), "--block-size", std::to_string(p.worker.block_size),
       "--kv-cache-mb", std::to_string(kv_mb), "--fd", std::to_string(child_fd), "--backend",
       device_backend_name(p.worker.device), "--device", std::to_string(p.worker.device.index)},
      child_end, child_fd);
}

}  // namespace

ProcessExecutor::ProcessExecutor(const ProcessExecutorParams& p) : params_(p) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail(ErrorCode::kInternal, "socketpair failed: ", std::strerror(errno));
  fd_ = sv[0];
  const int child_fd = std::max(sv[0], sv[1]) + 1;
  try {
    pid_ = spawn_worker(p, sv[1], child_fd);
  } catch (...) {
    ::close(sv[0]);
    ::close(sv[1]);
    fd_ = -1;
    throw;
  }
  ::close(sv[1]);  // only the child holds it now, so its death reads as EOF here
  alive_ = true;

  const std::string who =
      "worker process " + std::to_string(pid_) + " for model '" + p.worker.model_path + "'";
  protocol::ReadOutcome in;
  try {
    in = protocol::read_frame(fd_, p.start_timeout_seconds);
  } catch (const Error& e) {
    stop_child();
    fail(ErrorCode::kInternal, who, ": bad handshake: ", e.what());
  }
  if (in.status == ReadStatus::kTimeout) {
    stop_child();
    fail(ErrorCode::kInternal, who, " did not finish loading within ", p.start_timeout_seconds,
         " s");
  }
  if (in.status == ReadStatus::kEof) {
    stop_child();
    fail(ErrorCode::kInternal, who, " ", exit_description(), " before it was ready");
  }
  if (in.frame.type == FrameType::kError) {
    const protocol::WorkerError err = protocol::decode_error(in.frame.payload);
    stop_child();
    fail(err.code, who, " failed to load: ", err.message);
  }
  if (in.frame.type != FrameType::kHello) {
    stop_child();
    fail(ErrorCode::kInternal, who, ": expected Hello, got frame type ", int(in.frame.type));
  }
  const protocol::WorkerHello h = protocol::decode_hello(in.frame.payload);
  info_ = ExecutorInfo{.vocab_size = h.vocab_size,
                       .max_position = h.max_position,
                       .num_layers = h.num_layers,
                       .num_blocks = h.num_blocks,
                       .block_size = h.block_size};
}

ProcessExecutor::~ProcessExecutor() { stop_child(); }

protocol::ExecuteResult ProcessExecutor::execute(const protocol::ExecutePlan& plan) {
  if (!alive_)
    fail(ErrorCode::kInternal, "worker process ", pid_, " is not running (", exit_description(),
         ")");
  try {
    protocol::write_frame(fd_, FrameType::kPlan, protocol::encode_plan(plan));
  } catch (const Error& e) {
    lost(std::string("died (") + e.what() + ")");
  }
  protocol::ReadOutcome in;
  try {
    in = protocol::read_frame(fd_, params_.step_timeout_seconds);
  } catch (const Error& e) {
    lost(std::string("sent a corrupt reply: ") + e.what());
  }
  if (in.status == ReadStatus::kEof) lost("died during a step");
  if (in.status == ReadStatus::kTimeout)
    lost("timed out after " + std::to_string(params_.step_timeout_seconds) + " s in a step");
  if (in.frame.type == FrameType::kError) {
    // The worker caught it and is still serving: only this step fails.
    const protocol::WorkerError err = protocol::decode_error(in.frame.payload);
    throw Error(err.code, err.message);
  }
  if (in.frame.type != FrameType::kResult)
    lost("answered a plan with frame type " + std::to_string(int(in.frame.type)));
  try {
    return protocol::decode_result(in.frame.payload);
  } catch (const Error& e) {
    lost(std::string("sent a corrupt result: ") + e.what());
  }
}

void ProcessExecutor::lost(const std::string& what) {
  // A worker that timed out or spoke garbage is in an unknown state: make sure it is gone.
  stop_child();
  fail(ErrorCode::kInternal, "worker process ", pid_, " ", what, "; it ", exit_description());
}

bool ProcessExecutor::check_alive() {
  if (alive_ && !reaped_ && pid_ > 0) {
    exit_description();  // reaps it if it exited
    if (reaped_) {
      failure_ = "worker process " + std::to_string(pid_) + " " + describe_exit(wait_status_) +
                 " while idle";
      stop_child();
    }
  }
  return alive_;
}

std::string ProcessExecutor::exit_description() {
  if (!reaped_ && pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      wait_status_ = status;
    }
  }
  return reaped_ ? describe_exit(wait_status_) : "is still running";
}

void ProcessExecutor::stop_child() {
  alive_ = false;
  if (fd_ >= 0) {
    try {
      protocol::write_frame(fd_, FrameType::kShutdown, {});
    } catch (const Error&) {
      // Already gone; reaped below.
    }
  }
  if (pid_ > 0 && !reaped_) {
    wait_status_ = stop_children({pid_}, params_.shutdown_grace_seconds)[0];
    reaped_ = true;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace tessera::engine
