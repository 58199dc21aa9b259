#include "topology_launch.h"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <thread>

#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/weights.h"
#include "tessera/worker/group_worker.h"

namespace tessera::cli {

Launch launch_from_config(const std::string& path, int node_rank) {
  Launch l;
  l.topo = config::load_topology(path);
  const auto& t = l.topo;
  if (node_rank < 0 || node_rank >= static_cast<int>(t.nodes.size()))
    fail(ErrorCode::kInvalidArgument, "--node-rank ", node_rank, ": ", path, " has ",
         t.nodes.size(), " node(s) (valid: 0..", t.nodes.size() - 1, ")");
  set_log_level(t.logging.level);
  const std::string model_path = resolve_or_pull_model(t.model.path);
  {
    const model::ModelConfig mc = model::open_weights(model_path)->config();
    config::validate_for_model(t, mc.num_heads, mc.num_kv_heads, mc.num_layers, mc.num_experts);
  }
  // Activations and the KV cache are f32 on every backend so far: a topology that asks for
  // f16/bf16 is refused, never run silently in f32.
  if (t.model.dtype != "auto" && t.model.dtype != "f32")
    fail(ErrorCode::kUnsupported, path, ": model.dtype ", t.model.dtype, " (activations and KV ",
         "cache) is not implemented on backend ", t.backend, " yet (valid: auto, f32)");
  const auto& node = t.nodes[static_cast<size_t>(node_rank)];
  // Field by field: GCC 12 warns (maybe-uninitialized) on a designated initializer of this struct.
  engine::WorkerGroupParams g;
  g.tensor = t.parallel.tensor;
  g.pipeline = t.parallel.pipeline;
  g.expert = t.parallel.expert;
  g.layer_split = t.parallel.layer_split;
  g.devices = node.devices;
  g.backend = t.backend;
  g.store_host = t.coordinator.host;
  // One node: nobody else needs to find the store, so any free port (no clash between servers on
  // one machine). Several: the port the other nodes were told.
  g.store_port = t.nodes.size() > 1 ? t.coordinator.port : 0;
  g.control_host = t.coordinator.host;
  g.bind_host = node.host;
  g.threads_per_rank = t.threads_per_rank;
  g.start_timeout_seconds = t.coordinator.timeout_seconds;
  g.collective_timeout_seconds = t.coordinator.collective_timeout_seconds;
  g.heartbeat_seconds = t.coordinator.heartbeat_seconds;
  g.heartbeat_timeout_seconds = std::max(5.0, 5 * t.coordinator.heartbeat_seconds);
  g.max_in_flight = t.parallel.micro_batches;
  // One node: the executor makes a fresh secret per launch. Several: every node's processes must
  // present the same one, which only the operator can hand to each node.
  if (t.nodes.size() > 1) {
    const char* s = std::getenv(worker::kGroupSecretEnv);
    if (!s || std::string_view(s).size() < 16)
      fail(ErrorCode::kInvalidArgument, path, ": a topology of ", t.nodes.size(),
           " nodes needs the group's secret in ", worker::kGroupSecretEnv,
           " (the same value, at least 16 characters, on every node; e.g. `openssl rand -hex 32`)");
    g.secret = s;
  }
  const int first = t.first_rank_of_node(node_rank);
  for (int r = 0; r < t.ranks_on_node(node_rank); ++r) g.local_ranks.push_back(first + r);
  l.engine = engine::EngineConfig{
      .model_path = model_path,
      .served_model_name = t.model.served_name.empty() ? t.model.path : t.model.served_name,
      .limits = {.max_num_seqs = t.scheduler.max_num_seqs,
                 .max_num_batched_tokens = t.scheduler.max_num_batched_tokens,
                 .max_waiting = t.scheduler.max_waiting},
      .block_size = t.scheduler.block_size,
      .kv_cache_bytes = t.scheduler.kv_cache_bytes,
      .enable_prefix_caching = t.scheduler.enable_prefix_caching,
      .worker_executable = std::filesystem::read_symlink("/proc/self/exe").string(),
      .group = g};
  l.engine.cpu_activations = ops::cpu::parse_activations(t.cpu_activations);
  l.engine.kv_cache_dtype = kv_cache::parse_kv_dtype(t.scheduler.kv_cache_dtype);
  l.engine.graph_mode = worker::parse_graph_mode(t.scheduler.decode_graphs);
  l.engine.tp_overlap = t.tp_overlap;
  l.engine.sequence_parallel = t.sequence_parallel;
  l.engine.ep_data_attention = t.parallel.expert_attention == "data";
  return l;
}

int run_worker_node(const Launch& l, int node_rank) {
  std::atomic<bool> stop{false};
  const engine::WorkerGroupParams g = engine::group_params(l.engine);
  TESSERA_LOG_INFO("node {} of {}: ranks {}..{} under the coordinator at {}:{}", node_rank,
                   l.topo.nodes.size(), g.local_ranks.front(), g.local_ranks.back(), g.store_host,
                   g.store_port);
  std::thread agent([&] { engine::run_node_agent(g, stop); });
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int sig = 0;
  sigwait(&signals, &sig);
  TESSERA_LOG_INFO("signal {}: stopping this node's ranks", sig);
  stop = true;
  agent.join();
  return 0;
}

}  // namespace tessera::cli
