#include "tessera/worker/worker_process.h"

#include <unistd.h>

#include <memory>

#include "tessera/core/log.h"
#include "tessera/protocol/codec.h"
#include "tessera/protocol/frame_io.h"

namespace tessera::worker {
namespace {

using protocol::FrameType;

void send_error(int fd, ErrorCode code, const std::string& message) {
  const auto payload = protocol::encode_error({code, message});
  protocol::write_frame(fd, FrameType::kError, payload);
}

}  // namespace

int serve_plans(Worker& w, int fd, const FrameSender& send, const std::string& who) {
  for (;;) {
    const protocol::ReadOutcome in = protocol::read_frame(fd, 0.0);
    if (in.status != protocol::ReadStatus::kOk || in.frame.type == FrameType::kShutdown) return 0;
    try {
      if (in.frame.type != FrameType::kPlan)
        fail(ErrorCode::kInvalidArgument, who, ": unexpected frame type ", int(in.frame.type));
      send(FrameType::kResult,
           protocol::encode_result(w.execute(protocol::decode_plan(in.frame.payload))));
    } catch (const Error& e) {
      TESSERA_LOG_ERROR("{}: step failed: {}", who, e.what());
      send(FrameType::kError, protocol::encode_error({e.code(), who + ": " + e.what()}));
      if (e.code() == ErrorCode::kDeadlineExceeded || e.code() == ErrorCode::kUnavailable) return 3;
    } catch (const std::exception& e) {
      send(FrameType::kError,
           protocol::encode_error({ErrorCode::kInternal, who + ": " + e.what()}));
    }
  }
}

int run_worker_process(const WorkerProcessArgs& args) {
  const int fd = args.fd;
  std::unique_ptr<Worker> w;
  try {
    w = std::make_unique<Worker>(args.worker);
  } catch (const Error& e) {
    send_error(fd, e.code(), e.what());
    return 1;
  } catch (const std::exception& e) {
    send_error(fd, ErrorCode::kInternal, e.what());
    return 1;
  }
  TESSERA_LOG_INFO("worker on {}: weights {:.1f} MiB, KV {:.1f} MiB ({} blocks)",
                   w->device().str(), w->model().weight_bytes() / 1048576.0,
                   w->kv_bytes() / 1048576.0, w->num_blocks());
  const protocol::WorkerHello hello{.vocab_size = w->config().vocab_size,
                                    .max_position = w->config().max_position,
                                    .num_layers = w->config().num_layers,
                                    .num_blocks = w->num_blocks(),
                                    .block_size = w->block_size()};
  protocol::write_frame(fd, FrameType::kHello, protocol::encode_hello(hello));
  const int code = serve_plans(
      *w, fd,
      [fd](FrameType t, std::span<const uint8_t> payload) {
        protocol::write_frame(fd, t, payload);
      },
      "worker");
  ::close(fd);
  return code;
}

}  // namespace tessera::worker
