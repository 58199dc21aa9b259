// `tessera worker`: one rank of a worker group; its options come from the launcher.
#include "worker_cmd.h"

#include <omp.h>

#include <cstdlib>
#include <memory>
#include <sstream>

#include "tessera/config/topology.h"
#include "tessera/core/error.h"
#include "tessera/engine/llm_engine.h"
#include "tessera/kv_cache/kv_pool.h"
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

Command add_worker(CLI::App& root) {
  struct Opts {
    std::string model, backend = "cpu", activations = "int8", layer_split, store, group_id = "g0",
                       comm = "gloo", bind_host = "127.0.0.1", fingerprint, decode_graphs = "auto",
                       kv_cache_dtype = config::SchedulerSpec{}.kv_cache_dtype;
    int graph_max_batch = 64;
    int num_blocks = 0, block_size = 16, kv_cache_mb = 256, threads = 0, rank = 0, tp = 1, pp = 1,
        ep = 1, device = 0;
    double connect_timeout = 120.0, collective_timeout = 30.0, heartbeat = 1.0;
    bool tp_overlap = false, sequence_parallel = false, ep_data_attention = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand("worker", "one rank of a worker group (internal)");
  c->group("");  // hidden from `tessera --help`: the engine starts it
  c->add_option("--model", o->model, "the model path")->required();
  c->add_option("--num-blocks", o->num_blocks, "KV blocks (0: from --kv-cache-mb)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--block-size", o->block_size, "tokens per KV block")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_option("--kv-cache-mb", o->kv_cache_mb, "KV cache size in MiB")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_kv_cache_dtype_option(c, o->kv_cache_dtype);
  c->add_option("--threads", o->threads, "OpenMP threads (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--rank", o->rank, "world rank")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--tp", o->tp, "tensor-parallel size")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  c->add_option("--pp", o->pp, "pipeline-parallel size")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  c->add_option("--ep", o->ep, "expert-parallel ranks per stage")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  c->add_option("--layer-split", o->layer_split, "layers per pipeline stage: 12,12");
  c->add_option("--store", o->store, "the coordinator's rendezvous store HOST:PORT")->required();
  c->add_option("--group-id", o->group_id, "the worker group's id")->capture_default_str();
  c->add_option("--comm", o->comm, "the collectives library")->capture_default_str();
  c->add_option("--bind-host", o->bind_host, "the address this rank listens on")
      ->capture_default_str();
  c->add_option("--fingerprint", o->fingerprint, "the model and layout every rank must share");
  c->add_option("--connect-timeout", o->connect_timeout, "seconds to wait for the group")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--collective-timeout", o->collective_timeout, "seconds a collective may take")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--heartbeat", o->heartbeat, "seconds between heartbeats")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--device", o->device, "the device index")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_backend_option(c, o->backend);
  add_activations_option(c, o->activations);
  c->add_option("--decode-graphs", o->decode_graphs,
                "replay decode steps from CUDA graphs: auto (on a CUDA device), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  c->add_option("--graph-max-batch", o->graph_max_batch, "the largest decode batch recorded")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_flag("--tp-overlap", o->tp_overlap,
              "overlap each half of a step's TP all-reduces with the other half's compute");
  c->add_flag("--sequence-parallel", o->sequence_parallel,
              "TP: each rank keeps 1/T of the residual rows (reduce-scatter and all-gather in "
              "place of each all-reduce)");
  c->add_flag("--ep-data-attention", o->ep_data_attention,
              "expert parallelism: attention data-parallel over the EP ranks, tokens to their "
              "experts by all-to-all");
  return {c, [o] {
            if (o->threads > 0) omp_set_num_threads(o->threads);
            const worker::WorkerParams wp{
                .model_path = o->model,
                .num_blocks = o->num_blocks,
                .block_size = o->block_size,
                .kv_cache_bytes = static_cast<size_t>(o->kv_cache_mb) << 20,
                .kv_cache_dtype = kv_cache::parse_kv_dtype(o->kv_cache_dtype),
                .device = {parse_device_type(o->backend), o->device},
                .graph_mode = worker::parse_graph_mode(o->decode_graphs),
                .graph_max_batch = o->graph_max_batch,
                .cpu_activations = ops::cpu::parse_activations(o->activations),
                .tp_overlap = o->tp_overlap,
                .sequence_parallel = o->sequence_parallel,
                .ep_data_attention = o->ep_data_attention,
                .vocabulary = engine::grammar_vocabulary(o->model)};
            // Everything a rank needs comes from the launcher's command line and the
            // coordinator's store.
            const auto colon = o->store.rfind(':');
            if (colon == std::string::npos)
              fail(ErrorCode::kInvalidArgument, "worker: --store HOST:PORT is required");
            return worker::run_group_worker(
                {.worker = wp,
                 .rank = o->rank,
                 .tensor = o->tp,
                 .pipeline = o->pp,
                 .expert = o->ep,
                 .layer_split = o->layer_split.empty() ? std::vector<int>{}
                                                       : int_list(o->layer_split, "--layer-split"),
                 .store_host = o->store.substr(0, colon),
                 .store_port = std::stoi(o->store.substr(colon + 1)),
                 .group_id = o->group_id,
                 .comm = o->comm,
                 .bind_host = o->bind_host,
                 .fingerprint = o->fingerprint,
                 .connect_timeout_seconds = o->connect_timeout,
                 .collective_timeout_seconds = o->collective_timeout,
                 .heartbeat_seconds = o->heartbeat,
                 .secret = [] {
                   const char* s = std::getenv(worker::kGroupSecretEnv);
                   return std::string(s ? s : "");
                 }()});
          }};
}

}  // namespace tessera::cli
