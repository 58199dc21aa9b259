#include "tessera/worker/worker_process.h"

#include <unistd.h>

#include <memory>

#include "tessera/protocol/codec.h"
#include "tessera/protocol/frame_io.h"

namespace tessera::worker {
namespace {

using protocol::FrameType;

void send_error(int fd, ErrorCode code, const std::string& message) {
  const auto payload = protocol::encode_error({code, message});
  protocol::write_frame(fd, FrameType::kError, payload);
}

// Runs one plan frame and answers it; failures inside the step become an Error frame so the
// engine can fail the step without losing the worker.
void serve_plan(Worker& w, int fd, const protocol::Frame& frame) {
  try {
    const protocol::ExecuteResult result = w.execute(protocol::decode_plan(frame.payload));
    const auto payload = protocol::encode_result(result);
    protocol::write_frame(fd, FrameType::kResult, payload);
  } catch (const Error& e) {
    send_error(fd, e.code(), e.what());
  } catch (const std::exception& e) {
    send_error(fd, ErrorCode::kInternal, e.what());
  }
}

}  // namespace

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
  const protocol::WorkerHello hello{.vocab_size = w->config().vocab_size,
                                    .max_position = w->config().max_position,
                                    .num_layers = w->config().num_layers,
                                    .num_blocks = w->num_blocks(),
                                    .block_size = w->block_size()};
  protocol::write_frame(fd, FrameType::kHello, protocol::encode_hello(hello));
  for (;;) {
    const protocol::ReadOutcome in = protocol::read_frame(fd, 0.0);
    if (in.status != protocol::ReadStatus::kOk) break;  // the engine went away
    if (in.frame.type == FrameType::kShutdown) break;
    if (in.frame.type != FrameType::kPlan) {
      send_error(fd, ErrorCode::kInvalidArgument,
                 "worker: unexpected frame type " + std::to_string(int(in.frame.type)));
      continue;
    }
    serve_plan(*w, fd, in.frame);
  }
  ::close(fd);
  return 0;
}

}  // namespace tessera::worker
