#include "tessera/worker/group_worker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "tessera/comm/groups.h"
#include "tessera/comm/tcp.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/model/shard.h"
#include "tessera/ops/backend.h"
#include "tessera/protocol/codec.h"
#include "tessera/protocol/frame_io.h"

namespace tessera::worker {

std::string register_key(const std::string& g, int rank) {
  return g + "/register/" + std::to_string(rank);
}
std::string error_key(const std::string& g, int rank) {
  return g + "/error/" + std::to_string(rank);
}
std::string go_key(const std::string& g) { return g + "/go"; }
std::string control_key(const std::string& g) { return g + "/control"; }

namespace {

using protocol::FrameType;

// Frames go out from the step loop and the heartbeat thread; one lock keeps them whole.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  void send(FrameType t, std::span<const uint8_t> payload) {
    std::lock_guard lk(mu_);
    protocol::write_frame(fd_, t, payload);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::mutex mu_;
};

class Heartbeat {
 public:
  Heartbeat(Channel& ch, double period)
      : thread_([this, &ch, period] {
          std::unique_lock lk(mu_);
          while (!cv_.wait_for(lk, std::chrono::duration<double>(period), [&] { return stop_; })) {
            lk.unlock();
            try {
              ch.send(FrameType::kHeartbeat, {});
            } catch (const Error&) {
              return;  // the engine is gone; the main loop sees EOF
            }
            lk.lock();
          }
        }) {}
  ~Heartbeat() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Runs plans until Shutdown or EOF. A step that fails is reported and the rank keeps serving,
// except when a collective failed: the group is broken and the engine restarts it (exit code 3).
int serve_plans(Worker& w, Channel& ch, const std::string& who) {
  for (;;) {
    const protocol::ReadOutcome in = protocol::read_frame(ch.fd(), 0.0);
    if (in.status != protocol::ReadStatus::kOk || in.frame.type == FrameType::kShutdown) return 0;
    try {
      if (in.frame.type != FrameType::kPlan)
        fail(ErrorCode::kInvalidArgument, who, ": unexpected frame type ", int(in.frame.type));
      ch.send(FrameType::kResult,
              protocol::encode_result(w.execute(protocol::decode_plan(in.frame.payload))));
    } catch (const Error& e) {
      TESSERA_LOG_ERROR("{}: step failed: {}", who, e.what());
      ch.send(FrameType::kError, protocol::encode_error({e.code(), who + ": " + e.what()}));
      if (e.code() == ErrorCode::kDeadlineExceeded || e.code() == ErrorCode::kUnavailable) return 3;
    } catch (const std::exception& e) {
      ch.send(FrameType::kError,
              protocol::encode_error({ErrorCode::kInternal, who + ": " + e.what()}));
    }
  }
}

}  // namespace

int run_group_worker(const GroupWorkerArgs& a) {
  const std::string who = "rank " + std::to_string(a.rank);
  const int T = a.tensor, P = a.pipeline, E = a.expert, S = E * T, W = S * P;
  if (a.rank < 0 || a.rank >= W) fail(ErrorCode::kInvalidArgument, who, " outside a group of ", W);
  comm::StoreClient store({.host = a.store_host,
                           .port = a.store_port,
                           .connect_timeout_seconds = a.connect_timeout_seconds,
                           .secret = a.secret});
  // The device's allocator first: its stream is the one the NCCL communicators enqueue on (and it
  // outlives them, declared before them).
  std::shared_ptr<Allocator> device;
  std::unique_ptr<comm::Communicator> tp, pp, ep;
  std::unique_ptr<Worker> w;
  // S = E x T ranks per stage: EP-major, TP-minor inside the stage.
  const int stage = a.rank / S, tp_rank = a.rank % T, ep_rank = (a.rank % S) / T;
  try {
    // 1. Register what we are about to load, and wait for the coordinator's verdict on all ranks.
    const model::ModelConfig loaded = model::open_weights(a.worker.model_path)->config();
    store.set_string(
        register_key(a.group_id, a.rank),
        a.fingerprint + " model=" + loaded.architecture + " L" + std::to_string(loaded.num_layers) +
            " H" + std::to_string(loaded.hidden_size) + " heads" +
            std::to_string(loaded.num_heads) + "/" + std::to_string(loaded.num_kv_heads) + " V" +
            std::to_string(loaded.vocab_size));
    const std::string go = store.get_string(go_key(a.group_id), a.connect_timeout_seconds);
    if (go != "ok") fail(ErrorCode::kInvalidArgument, "the coordinator refused the group: ", go);
    device = ops::make_allocator(a.worker.device);
    // 2. Communicators: TP and EP inside the stage, PP across stages at the same (ep, tp) rank.
    auto make = [&](const std::string& name, int rank, int size) {
      const comm::GroupParams gp{
          .name = a.group_id + "/" + name,
          .rank = rank,
          .size = size,
          .timeout_seconds = a.collective_timeout_seconds,
          .store = &store,
          .bind_host = a.bind_host,
          .cuda_device = a.worker.device.is_cuda() ? a.worker.device.index : -1,
          .cuda_stream = device->stream()};
      // Counted, so each step reports the bytes it sent (tessera:comm_bytes_total).
      return std::make_unique<comm::CountingCommunicator>(
          a.comm == "nccl" ? comm::make_nccl_communicator(gp) : comm::make_cpu_communicator(gp));
    };
    if (T > 1)
      tp = make(E > 1 ? "tp[stage " + std::to_string(stage) + " ep " + std::to_string(ep_rank) + "]"
                      : "tp[stage " + std::to_string(stage) + "]",
                tp_rank, T);
    if (E > 1)
      ep = make("ep[stage " + std::to_string(stage) + " tp " + std::to_string(tp_rank) + "]",
                ep_rank, E);
    if (P > 1)
      pp = make(E > 1 ? "pp[ep " + std::to_string(ep_rank) + " tp " + std::to_string(tp_rank) + "]"
                      : "pp[tp " + std::to_string(tp_rank) + "]",
                stage, P);
    // 3. The shard.
    WorkerParams wp = a.worker;
    wp.allocator = device;
    const auto ranges = model::stage_ranges(loaded.num_layers, P, a.layer_split);
    wp.shard = {.tp_rank = tp_rank,
                .tp_size = T,
                .first_layer = ranges[static_cast<size_t>(stage)].first,
                .num_layers = ranges[static_cast<size_t>(stage)].second,
                .stage = stage,
                .num_stages = P,
                .ep_rank = ep_rank,
                .ep_size = E,
                .ep_data_attention = a.worker.ep_data_attention,
                .tp_overlap = a.worker.tp_overlap,
                .sequence_parallel = a.worker.sequence_parallel};
    w = std::make_unique<Worker>(wp, tp.get(), pp.get(), ep.get());
  } catch (const std::exception& e) {
    TESSERA_LOG_ERROR("{}: {}", who, e.what());
    try {
      store.set_string(error_key(a.group_id, a.rank), e.what());
    } catch (const std::exception&) {
    }
    return 1;
  }
  // 4. Join the engine.
  const auto [control_host, control_port] = comm::tcp::split_host_port(
      store.get_string(control_key(a.group_id), a.connect_timeout_seconds), "engine control");
  const int fd = comm::tcp::connect(control_host, control_port, "the engine");
  Channel ch(fd);
  ch.send(
      FrameType::kAuth,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(a.secret.data()), a.secret.size()));
  const auto& shard = w->model().shard();
  const protocol::WorkerHello hello{.vocab_size = w->config().vocab_size,
                                    .max_position = w->config().max_position,
                                    .num_layers = w->config().num_layers,
                                    .num_blocks = w->num_blocks(),
                                    .block_size = w->block_size(),
                                    .rank = a.rank,
                                    .weight_bytes = w->model().weight_bytes(),
                                    .resident_bytes = model::resident_bytes(),
                                    .kv_bytes = w->kv_bytes()};
  TESSERA_LOG_INFO(
      "{} (stage {}, tp {}) on {}: layers {}..{}, weights {:.1f} MiB, KV {:.1f} MiB, resident "
      "{:.1f} MiB",
      who, stage, tp_rank, w->device().str(), shard.first_layer,
      shard.first_layer + shard.num_layers - 1, hello.weight_bytes / 1048576.0,
      hello.kv_bytes / 1048576.0, hello.resident_bytes / 1048576.0);
  if (shard.tp_size > 1)
    TESSERA_LOG_INFO("{}: TP residual {}, tp_overlap {}", who,
                     shard.sequence_parallel ? "sequence-parallel (reduce-scatter + all-gather)"
                                             : "replicated (all-reduce)",
                     shard.tp_overlap ? "on" : "off");
  ch.send(FrameType::kHello, protocol::encode_hello(hello));
  Heartbeat beat(ch, a.heartbeat_seconds);
  const int code = serve_plans(*w, ch, who);
  ::close(fd);
  return code;
}

}  // namespace tessera::worker
