#include "worker_cmd.h"

#include <omp.h>

#include <cstdlib>
#include <sstream>

#include "args.h"
#include "tessera/core/error.h"
#include "tessera/worker/group_worker.h"

namespace tessera::cli {
namespace {

std::vector<int> int_list(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      out.push_back(std::stoi(item));
    } catch (const std::exception&) {
      fail(ErrorCode::kInvalidArgument, "worker: ", what, ": '", item, "' is not a number");
    }
  }
  return out;
}

}  // namespace

int cmd_worker(const std::vector<std::string>& args) {
  const Args a(args,
               {"model",
                "num-blocks",
                "block-size",
                "kv-cache-mb",
                "threads",
                "rank",
                "tp",
                "pp",
                "ep",
                "layer-split",
                "store",
                "group-id",
                "comm",
                "bind-host",
                "fingerprint",
                "connect-timeout",
                "collective-timeout",
                "heartbeat",
                "device",
                "backend"},
               {});
  const auto model = a.get("model");
  if (!model) fail(ErrorCode::kInvalidArgument, "worker: --model is required");
  const int kv_mb = a.get_int("kv-cache-mb", 256);
  if (kv_mb < 0) fail(ErrorCode::kInvalidArgument, "worker: --kv-cache-mb must be >= 0");
  if (const int t = a.get_int("threads", 0); t > 0) omp_set_num_threads(t);
  const int device_index = a.get_int("device", 0);
  if (device_index < 0) fail(ErrorCode::kInvalidArgument, "worker: --device must be >= 0");
  const worker::WorkerParams wp{
      .model_path = *model,
      .num_blocks = a.get_int("num-blocks", 0),
      .block_size = a.get_int("block-size", 16),
      .kv_cache_bytes = static_cast<size_t>(kv_mb) << 20,
      .device = {parse_device_type(a.get_or("backend", "cpu")), device_index}};
  // Everything a rank needs comes from the launcher's command line and the coordinator's store.
  const std::string store = a.get_or("store", "");
  const auto colon = store.rfind(':');
  if (colon == std::string::npos)
    fail(ErrorCode::kInvalidArgument, "worker: --store HOST:PORT is required");
  return worker::run_group_worker(
      {.worker = wp,
       .rank = a.get_int("rank", 0),
       .tensor = a.get_int("tp", 1),
       .pipeline = a.get_int("pp", 1),
       .expert = a.get_int("ep", 1),
       .layer_split = a.get("layer-split") ? int_list(*a.get("layer-split"), "--layer-split")
                                           : std::vector<int>{},
       .store_host = store.substr(0, colon),
       .store_port = std::stoi(store.substr(colon + 1)),
       .group_id = a.get_or("group-id", "g0"),
       .comm = a.get_or("comm", "gloo"),
       .bind_host = a.get_or("bind-host", "127.0.0.1"),
       .fingerprint = a.get_or("fingerprint", ""),
       .connect_timeout_seconds = a.get_double("connect-timeout", 120.0),
       .collective_timeout_seconds = a.get_double("collective-timeout", 30.0),
       .heartbeat_seconds = a.get_double("heartbeat", 1.0),
       .secret = [] {
         const char* s = std::getenv(worker::kGroupSecretEnv);
         return std::string(s ? s : "");
       }()});
}

}  // namespace tessera::cli
