#include "tessera/engine/worker_group.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "child_process.h"
#include "tessera/comm/tcp.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/core/secret.h"
#include "tessera/model/shard.h"
#include "tessera/model/weights.h"
#include "tessera/protocol/codec.h"
#include "tessera/protocol/frame_io.h"
#include "tessera/worker/group_worker.h"

namespace tessera::engine {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::FrameType;

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string new_group_id() {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "g%d-%08x", static_cast<int>(::getpid()), rd());
  return buf;
}

bool comm_failure(ErrorCode c) {
  return c == ErrorCode::kDeadlineExceeded || c == ErrorCode::kUnavailable;
}

}  // namespace

WorkerGroupExecutor::WorkerGroupExecutor(const WorkerGroupParams& p)
    : params_(p), group_id_(new_group_id()) {
  const int T = p.tensor, P = p.pipeline, E = p.expert, W = E * T * P;
  if (T < 1 || P < 1 || E < 1)
    fail(ErrorCode::kInvalidArgument, "worker group of ", E, " x ", T, " x ", P);
  if (params_.local_ranks.empty())
    for (int r = 0; r < W; ++r) params_.local_ranks.push_back(r);
  if (params_.secret.empty()) params_.secret = random_secret();
  max_in_flight_ = p.max_in_flight > 0 ? p.max_in_flight : P;
  if (P > 1 && params_.layer_split.empty()) {
    // No split given: balance the bytes each stage reads (the last stage also has the LM head).
    params_.layer_split = model::balanced_split(*model::open_weights(p.worker.model_path), P);
    const std::string s = join_ints(params_.layer_split);
    TESSERA_LOG_INFO(
        "pipeline stages of [{}] layers (balanced by weight bytes, LM head on the last)", s);
  }
  output_rank_ = (P - 1) * E * T;  // ep 0, tp 0 of the last stage
  info_.world_size = W;
  info_.layout = (E > 1 ? "EP=" + std::to_string(E) + " x " : std::string()) +
                 "TP=" + std::to_string(T) + " x PP=" + std::to_string(P) + " over " +
                 (p.backend == "cuda" ? "nccl" : "gloo");
  ranks_.resize(static_cast<size_t>(W));
  for (int r = 0; r < W; ++r) ranks_[static_cast<size_t>(r)].rank = r;
  try {
    store_ = std::make_unique<comm::StoreServer>(comm::StoreServerParams{
        .host = p.store_host, .port = p.store_port, .secret = params_.secret});
    int port = 0;
    listen_fd_ = comm::tcp::listen(p.control_host, port, "the worker group's control port");
    store_->set(worker::control_key(group_id_), [&] {
      const std::string s = p.control_host + ":" + std::to_string(port);
      return std::vector<uint8_t>(s.begin(), s.end());
    }());
    // Ranks of other nodes learn the incarnation from the store (see run_node_agent).
    store_->set(kCurrentGroupKey, std::vector<uint8_t>(group_id_.begin(), group_id_.end()));
    for (size_t i = 0; i < params_.local_ranks.size(); ++i)
      spawn_local(params_.local_ranks[i], static_cast<int>(i));
    await_registrations(group_fingerprint(params_));
    accept_ranks();
  } catch (...) {
    stop_all(params_.shutdown_grace_seconds);
    throw;
  }
  const auto& h = ranks_[static_cast<size_t>(output_rank_)].hello;
  info_.vocab_size = h.vocab_size;
  info_.max_position = h.max_position;
  info_.num_layers = h.num_layers;
  info_.block_size = h.block_size;
  info_.num_blocks = h.num_blocks;
  for (const auto& r : ranks_) info_.num_blocks = std::min(info_.num_blocks, r.hello.num_blocks);
  alive_ = true;
  heard_.assign(ranks_.size(), Clock::now());
  for (const auto& r : ranks_) info_.ranks.push_back(r.hello);
  for (const auto& r : ranks_)
    TESSERA_LOG_INFO(
        "group {}: rank {} pid {}: weights {:.1f} MiB, KV {:.1f} MiB, resident {:.1f} MiB",
        group_id_, r.rank, r.pid, r.hello.weight_bytes / 1048576.0, r.hello.kv_bytes / 1048576.0,
        r.hello.resident_bytes / 1048576.0);
}

WorkerGroupExecutor::~WorkerGroupExecutor() { stop_all(params_.shutdown_grace_seconds); }

int WorkerGroupExecutor::store_port() const { return store_ ? store_->port() : 0; }

std::string group_fingerprint(const WorkerGroupParams& p) {
  const std::string split = join_ints(p.layer_split);
  return "E=" + std::to_string(p.expert) + " T=" + std::to_string(p.tensor) +
         " P=" + std::to_string(p.pipeline) + " split=" + split +
         " block=" + std::to_string(p.worker.block_size) + " backend=" + p.backend;
}

std::vector<std::string> worker_command(const WorkerGroupParams& p, int rank, int local_index,
                                        const std::string& group_id,
                                        const std::string& store_addr) {
  const size_t kv_mb = kv_cache_mb(p.worker.kv_cache_bytes);
  int threads = p.threads_per_rank;
  if (threads <= 0)
    threads = std::max<int>(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                   std::max<int>(1, static_cast<int>(p.local_ranks.size())));
  std::vector<std::string> args = {p.executable,
                                   "worker",
                                   "--rank",
                                   std::to_string(rank),
                                   "--tp",
                                   std::to_string(p.tensor),
                                   "--pp",
                                   std::to_string(p.pipeline),
                                   "--ep",
                                   std::to_string(p.expert),
                                   "--store",
                                   store_addr,
                                   "--group-id",
                                   group_id,
                                   "--comm",
                                   p.backend == "cuda" ? "nccl" : "gloo",
                                   "--bind-host",
                                   p.bind_host.empty() ? p.control_host : p.bind_host,
                                   "--model",
                                   p.worker.model_path,
                                   "--num-blocks",
                                   std::to_string(p.worker.num_blocks),
                                   "--block-size",
                                   std::to_string(p.worker.block_size),
                                   "--kv-cache-mb",
                                   std::to_string(kv_mb),
                                   "--threads",
                                   std::to_string(threads),
                                   "--collective-timeout",
                                   std::to_string(p.collective_timeout_seconds),
                                   "--connect-timeout",
                                   std::to_string(p.start_timeout_seconds),
                                   "--heartbeat",
                                   std::to_string(p.heartbeat_seconds),
                                   "--fingerprint",
                                   group_fingerprint(p)};
  if (!p.layer_split.empty()) args.insert(args.end(), {"--layer-split", join_ints(p.layer_split)});
  args.insert(args.end(), {"--backend", p.backend});
  args.insert(args.end(), {"--activations", ops::cpu::activations_name(p.worker.cpu_activations)});
  args.insert(args.end(), {"--kv-cache-dtype", std::string(dtype_name(p.worker.kv_cache_dtype))});
  args.insert(args.end(), {"--decode-graphs", worker::graph_mode_name(p.worker.graph_mode),
                           "--graph-max-batch", std::to_string(p.worker.graph_max_batch)});
  if (p.worker.tp_overlap) args.push_back("--tp-overlap");
  if (p.worker.sequence_parallel) args.push_back("--sequence-parallel");
  if (p.worker.ep_data_attention && p.expert > 1) args.push_back("--ep-data-attention");
  if (local_index < static_cast<int>(p.devices.size()))
    args.insert(args.end(),
                {"--device", std::to_string(p.devices[static_cast<size_t>(local_index)])});
  return args;
}

void WorkerGroupExecutor::spawn_local(int rank, int local_index) {
  ranks_[static_cast<size_t>(rank)].pid =
      spawn_child(worker_command(params_, rank, local_index, group_id_,
                                 params_.store_host + ":" + std::to_string(store_->port())),
                  {std::string(worker::kGroupSecretEnv) + "=" + params_.secret});
}

std::string WorkerGroupExecutor::rank_status(const RankInfo& r) {
  std::string s = "rank " + std::to_string(r.rank);
  if (r.pid > 0) {
    s += " (pid " + std::to_string(r.pid) + ")";
    int status = 0;
    if (try_reap(r.pid, status)) {
      const_cast<RankInfo&>(r).pid = -r.pid;  // reaped: remember for messages, never signal it
      s += " " + describe_exit(status);
    }
  }
  if (store_ && store_->has(worker::error_key(group_id_, r.rank))) {
    const auto v = store_->value(worker::error_key(group_id_, r.rank));
    s += ": " + std::string(v.begin(), v.end());
  }
  return s;
}

std::string WorkerGroupExecutor::with_dead_ranks(const std::string& why) {
  const auto until = Clock::now() + std::chrono::milliseconds(200);
  for (;;) {
    std::string dead;
    for (const RankInfo& r : ranks_) {
      if (r.pid == -1) continue;              // a rank of another node: its agent reports it
      const std::string st = rank_status(r);  // reaps an exited process (pid becomes negative)
      if (r.pid < -1) dead += (dead.empty() ? "" : "; ") + st;
    }
    if (!dead.empty()) return dead + "; " + why;
    if (Clock::now() > until) return why;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void WorkerGroupExecutor::await_registrations(const std::string& fingerprint) {
  const auto deadline = after(params_.start_timeout_seconds);
  const int W = static_cast<int>(ranks_.size());
  for (;;) {
    std::vector<int> missing;
    for (int r = 0; r < W; ++r) {
      const RankInfo& ri = ranks_[static_cast<size_t>(r)];
      const std::string st = rank_status(ri);
      if (ri.pid < -1 || store_->has(worker::error_key(group_id_, r)))
        fail(ErrorCode::kUnavailable, "worker group ", info_.layout, ": ", st, " before joining");
      if (!store_->has(worker::register_key(group_id_, r))) missing.push_back(r);
    }
    if (missing.empty()) break;
    if (Clock::now() > deadline) {
      std::string who;
      for (int r : missing) who += (who.empty() ? "" : ", ") + std::to_string(r);
      fail(ErrorCode::kDeadlineExceeded, "worker group ", info_.layout, ": rank(s) ", who,
           " did not register within ", params_.start_timeout_seconds, " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Every rank must have loaded the same model with the same layout.
  std::string first, verdict = "ok";
  for (int r = 0; r < W; ++r) {
    const auto v = store_->value(worker::register_key(group_id_, r));
    const std::string f(v.begin(), v.end());
    if (r == 0) first = f;
    if (f.rfind(fingerprint, 0) != 0 || f != first) {
      verdict = "rank " + std::to_string(r) + " registered '" + f + "' but rank 0 registered '" +
                first + "'";
      break;
    }
  }
  store_->set(worker::go_key(group_id_), std::vector<uint8_t>(verdict.begin(), verdict.end()));
  if (verdict != "ok")
    fail(ErrorCode::kInvalidArgument, "worker group ", info_.layout, ": ", verdict);
}

// The first frame of a control connection must be Auth with the group's secret (small, and read
// within seconds: a stranger can neither make us allocate nor hold the accept loop for long).
bool WorkerGroupExecutor::authenticate(int fd) {
  std::string why;
  try {
    const protocol::ReadOutcome in = protocol::read_frame(fd, 2.0, protocol::kMaxAuthPayload);
    if (in.status != protocol::ReadStatus::kOk) {
      why = "no auth frame";
    } else if (in.frame.type != FrameType::kAuth) {
      why = "no group secret presented";
    } else if (!secrets_equal(params_.secret, std::string_view(reinterpret_cast<const char*>(
                                                                   in.frame.payload.data()),
                                                               in.frame.payload.size()))) {
      why = "wrong group secret";
    }
  } catch (const Error& e) {
    why = e.what();
  }
  if (why.empty()) return true;
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  char host[64] = "?";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 && peer.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, host, sizeof host);
  TESSERA_LOG_WARN("group {}: refused a control connection from {}: {}", group_id_, host, why);
  return false;
}

void WorkerGroupExecutor::accept_ranks() {
  const auto deadline = after(params_.start_timeout_seconds);
  size_t joined = 0;
  while (joined < ranks_.size()) {
    for (const auto& r : ranks_) {
      if (r.fd >= 0) continue;
      const std::string st = rank_status(r);
      if (r.pid < -1 || store_->has(worker::error_key(group_id_, r.rank)))
        fail(ErrorCode::kUnavailable, "worker group ", info_.layout, ": ", st);
    }
    if (Clock::now() > deadline) {
      std::string who;
      for (const auto& r : ranks_)
        if (r.fd < 0) who += (who.empty() ? "" : ", ") + std::to_string(r.rank);
      fail(ErrorCode::kDeadlineExceeded, "worker group ", info_.layout, ": rank(s) ", who,
           " did not join within ", params_.start_timeout_seconds, " s");
    }
    pollfd pf{.fd = listen_fd_, .events = POLLIN, .revents = 0};
    if (::poll(&pf, 1, 50) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!authenticate(fd)) {
      ::close(fd);
      continue;
    }
    protocol::ReadOutcome in;
    try {
      in = protocol::read_frame(fd, 10.0);
    } catch (const Error& e) {
      TESSERA_LOG_WARN("group {}: dropped a control connection: {}", group_id_, e.what());
    }
    if (in.status != protocol::ReadStatus::kOk || in.frame.type != FrameType::kHello) {
      ::close(fd);
      continue;
    }
    protocol::WorkerHello h;
    try {
      h = protocol::decode_hello(in.frame.payload);
    } catch (const Error&) {
      ::close(fd);
      continue;
    }
    if (h.rank < 0 || h.rank >= static_cast<int>(ranks_.size()) ||
        ranks_[static_cast<size_t>(h.rank)].fd >= 0) {
      TESSERA_LOG_WARN("group {}: refused a Hello from rank {}", group_id_, h.rank);
      ::close(fd);
      continue;
    }
    ranks_[static_cast<size_t>(h.rank)].fd = fd;
    ranks_[static_cast<size_t>(h.rank)].hello = h;
    ++joined;
  }
}

void WorkerGroupExecutor::submit(const protocol::ExecutePlan& plan) {
  if (!alive_) fail(ErrorCode::kUnavailable, "worker group ", info_.layout, " is not running");
  const auto payload = protocol::encode_plan(plan);
  for (auto& r : ranks_) {
    try {
      protocol::write_frame(r.fd, FrameType::kPlan, payload);
    } catch (const Error& e) {
      lost(rank_status(r) + " is gone (" + e.what() + ")");
    }
  }
  ++pending_;
}

protocol::ExecuteResult WorkerGroupExecutor::collect() {
  if (!alive_) fail(ErrorCode::kUnavailable, "worker group ", info_.layout, " is not running");
  if (pending_ == 0) fail(ErrorCode::kInternal, "collect() with no plan in flight");
  // Wait on every rank at once, so that a rank that dies is noticed even while the others are
  // blocked in a collective waiting for it.
  const size_t W = ranks_.size();
  std::vector<bool> got(W, false);
  std::vector<Clock::time_point> heard(W, Clock::now());
  const auto step_deadline = after(params_.step_timeout_seconds);
  std::optional<protocol::WorkerError> first_error;
  protocol::ExecuteResult result;
  size_t answered = 0;
  while (answered < W) {
    std::vector<pollfd> pfs;
    std::vector<size_t> which;
    for (size_t i = 0; i < W; ++i)
      if (!got[i]) {
        pfs.push_back({.fd = ranks_[i].fd, .events = POLLIN, .revents = 0});
        which.push_back(i);
      }
    ::poll(pfs.data(), pfs.size(), 100);
    const auto now = Clock::now();
    for (size_t k = 0; k < pfs.size(); ++k) {
      RankInfo& r = ranks_[which[k]];
      if (!(pfs[k].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (now - heard[which[k]] >
            std::chrono::duration<double>(params_.heartbeat_timeout_seconds))
          lost(rank_status(r) + " sent nothing, not even a heartbeat, for " +
               std::to_string(params_.heartbeat_timeout_seconds) + " s: hung");
        continue;
      }
      protocol::ReadOutcome in;
      try {
        in = protocol::read_frame(r.fd, params_.heartbeat_timeout_seconds);
      } catch (const Error& e) {
        lost(rank_status(r) + " sent a corrupt frame: " + e.what());
      }
      if (in.status == protocol::ReadStatus::kEof) {
        std::this_thread::sleep_for(
            std::chrono::milliseconds(20));  // let it be reaped for the message
        lost(rank_status(r) + ": its connection closed during a step");
      }
      if (in.status == protocol::ReadStatus::kTimeout)
        lost(rank_status(r) + " stalled in the middle of a frame");
      heard[which[k]] = now;
      heard_[which[k]] = now;
      if (in.frame.type == FrameType::kHeartbeat) continue;
      got[which[k]] = true;
      ++answered;
      if (in.frame.type == FrameType::kError) {
        protocol::WorkerError err = protocol::decode_error(in.frame.payload);
        if (comm_failure(err.code))
          lost(with_dead_ranks(err.message));  // the group is broken: do not wait for the rest
        if (!first_error) first_error = std::move(err);
      } else if (in.frame.type == FrameType::kResult) {
        // Output ranks sample (one, or each data-parallel EP rank of the last stage its own
        // sequences); every rank reports its held experts' token counts and its bytes sent.
        protocol::ExecuteResult part = protocol::decode_result(in.frame.payload);
        result.sampled.insert(result.sampled.end(), part.sampled.begin(), part.sampled.end());
        result.comm_bytes.insert(result.comm_bytes.end(), part.comm_bytes.begin(),
                                 part.comm_bytes.end());
        result.expert_tokens.insert(result.expert_tokens.end(), part.expert_tokens.begin(),
                                    part.expert_tokens.end());
      } else {
        lost(rank_status(r) + " answered a plan with frame type " +
             std::to_string(int(in.frame.type)));
      }
    }
    if (Clock::now() > step_deadline)
      lost("a step took longer than " + std::to_string(params_.step_timeout_seconds) + " s");
  }
  --pending_;
  if (first_error) throw Error(first_error->code, first_error->message);
  return result;
}

bool WorkerGroupExecutor::check_alive() {
  if (!alive_ || pending_ > 0) return alive_;
  try {
    // Between steps the ranks send only heartbeats: drain them; EOF or silence means trouble.
    std::vector<pollfd> pfs;
    for (const auto& r : ranks_) pfs.push_back({.fd = r.fd, .events = POLLIN, .revents = 0});
    ::poll(pfs.data(), pfs.size(), 0);
    const auto now = Clock::now();
    for (size_t i = 0; i < ranks_.size(); ++i) {
      if (pfs[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        const protocol::ReadOutcome in =
            protocol::read_frame(ranks_[i].fd, params_.heartbeat_timeout_seconds);
        if (in.status != protocol::ReadStatus::kOk) {
          std::this_thread::sleep_for(
              std::chrono::milliseconds(20));  // let it be reaped for the message
          lost(rank_status(ranks_[i]) + ": its connection closed while idle");
        }
        if (in.frame.type != FrameType::kHeartbeat)
          lost(rank_status(ranks_[i]) + " sent frame type " + std::to_string(int(in.frame.type)) +
               " while idle");
        heard_[i] = now;
      } else if (now - heard_[i] >
                 std::chrono::duration<double>(params_.heartbeat_timeout_seconds)) {
        lost(rank_status(ranks_[i]) + " sent no heartbeat for " +
             std::to_string(params_.heartbeat_timeout_seconds) + " s while idle: hung");
      }
    }
  } catch (const Error& e) {
    failure_ = e.what();
    if (alive_) stop_all(0.0);  // a corrupt frame: lost() was not reached
  }
  return alive_;
}

void WorkerGroupExecutor::lost(const std::string& what) {
  TESSERA_LOG_ERROR("worker group {} ({}) lost: {}", group_id_, info_.layout, what);
  failure_ = what;
  // A lost group is replaced, not shut down: a hung rank cannot exit by itself and the others are
  // stuck in collectives waiting for it, so no grace period (it cost 3 s of every hang's recovery).
  stop_all(0.0);
  fail(ErrorCode::kUnavailable, "worker group ", info_.layout, ": ", what);
}

void WorkerGroupExecutor::stop_all(double grace_seconds) {
  alive_ = false;
  pending_ = 0;
  for (auto& r : ranks_)
    if (r.fd >= 0) {
      try {
        protocol::write_frame(r.fd, FrameType::kShutdown, {});
      } catch (const Error&) {
      }
    }
  std::vector<pid_t> pids;
  for (const auto& r : ranks_)
    if (r.pid > 0) pids.push_back(r.pid);
  stop_children(pids, grace_seconds);
  for (auto& r : ranks_) {
    if (r.pid > 0) r.pid = -r.pid;
    if (r.fd >= 0) ::close(r.fd);
    r.fd = -1;
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace tessera::engine
