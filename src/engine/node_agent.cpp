// run_node_agent: the launcher of a node other than the coordinator's. See worker_group.h.
#include <chrono>
#include <thread>

#include "child_process.h"
#include "tessera/core/log.h"
#include "tessera/engine/worker_group.h"
#include "tessera/model/shard.h"
#include "tessera/model/weights.h"
#include "tessera/worker/group_worker.h"

namespace tessera::engine {

int run_node_agent(const WorkerGroupParams& params, const std::atomic<bool>& stop) {
  WorkerGroupParams p = params;
  if (p.pipeline > 1 && p.layer_split.empty())  // the coordinator's choice, made the same way
    p.layer_split = model::balanced_split(*model::open_weights(p.worker.model_path), p.pipeline);
  const std::string store_addr = p.store_host + ":" + std::to_string(p.store_port);
  std::string last;
  bool waiting_logged = false;
  while (!stop) {
    std::unique_ptr<comm::StoreClient> store;
    std::string gid;
    try {
      store = std::make_unique<comm::StoreClient>(comm::StoreClientParams{
          .host = p.store_host,
          .port = p.store_port,
          .connect_timeout_seconds = 2.0,
          .secret = p.secret});
      gid = store->get_string(kCurrentGroupKey, 2.0);
    } catch (const std::exception& e) {
      if (!waiting_logged)
        TESSERA_LOG_INFO("node agent: waiting for the coordinator at {} ({})", store_addr,
                         e.what());
      waiting_logged = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    if (gid == last) {  // that incarnation is over for us: wait for the coordinator's next one
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    std::vector<pid_t> pids;
    for (size_t i = 0; i < p.local_ranks.size(); ++i)
      pids.push_back(
          spawn_child(worker_command(p, p.local_ranks[i], static_cast<int>(i), gid, store_addr),
                      {std::string(worker::kGroupSecretEnv) + "=" + p.secret}));
    TESSERA_LOG_INFO("node agent: {} rank(s) joining group {}", pids.size(), gid);
    std::string why = "stopping";
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      int status = 0;
      bool exited = false;
      for (pid_t& pid : pids)
        if (pid > 0 && try_reap(pid, status)) {
          why = "rank exited: " + describe_exit(status);
          pid = -1;
          exited = true;
        }
      if (exited) break;
      try {
        if (store->get_string(kCurrentGroupKey, 1.0) != gid) {
          why = "the coordinator started a new group";
          break;
        }
      } catch (const std::exception& e) {
        why = std::string("lost the coordinator: ") + e.what();
        break;
      }
    }
    TESSERA_LOG_INFO("node agent: leaving group {} ({})", gid, why);
    std::vector<pid_t> live;
    for (pid_t pid : pids)
      if (pid > 0) live.push_back(pid);
    stop_children(live, p.shutdown_grace_seconds);
    last = gid;
    waiting_logged = false;
  }
  return 0;
}

}  // namespace tessera::engine
