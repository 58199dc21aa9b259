#include "worker_cmd.h"

#include <omp.h>

#include "args.h"
#include "tessera/core/error.h"
#include "tessera/worker/worker_process.h"

namespace tessera::cli {

int cmd_worker(const std::vector<std::string>& args) {
  const Args a(args, {"model", "num-blocks", "block-size", "kv-cache-mb", "fd", "threads"}, {});
  const auto model = a.get("model");
  if (!model) fail(ErrorCode::kInvalidArgument, "worker: --model is required");
  const int fd = a.get_int("fd", -1);
  if (fd < 0) fail(ErrorCode::kInvalidArgument, "worker: --fd is required");
  const int kv_mb = a.get_int("kv-cache-mb", 256);
  if (kv_mb < 0) fail(ErrorCode::kInvalidArgument, "worker: --kv-cache-mb must be >= 0");
  if (const int t = a.get_int("threads", 0); t > 0) omp_set_num_threads(t);
  return worker::run_worker_process({.worker = {.model_path = *model,
                                                .num_blocks = a.get_int("num-blocks", 0),
                                                .block_size = a.get_int("block-size", 16),
                                                .kv_cache_bytes = static_cast<size_t>(kv_mb) << 20},
                                     .fd = fd});
}

}  // namespace tessera::cli
