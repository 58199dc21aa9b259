// TopologyConfig: the YAML file a cluster operator writes to launch Tessera (`tessera serve
// --config FILE`): the model, the backend, the T x P layout, the nodes and their devices, the
// coordinator, scheduler limits, listeners and logging. Parsed with yaml-cpp and validated here,
// so a config that leaves this module is consistent; errors name the file, line and column, the
// key and the valid choices. A plain value: the launcher owns it.
//
// Ranks: world rank = stage * tensor + tp_rank; a TP group never spans nodes. Node i hosts the
// ranks of its devices in order: node 0 the first len(devices) ranks, and so on.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::config {

struct ModelSpec {
  std::string path;            // file/dir, or a known name (smollm2-135m-instruct)
  std::string served_name;     // "" = the path/name as given
  std::string dtype = "auto";  // auto | f32 | f16 | bf16 (activations; weights as stored)
  int max_model_len = 0;       // 0 = the model's context
};

struct ParallelSpec {
  int tensor = 1;
  int pipeline = 1;
  std::vector<int>
      layer_split;        // per-stage layer counts; empty = balanced by the engine (by bytes)
  int micro_batches = 0;  // plans in flight at once; 0 = pipeline (one per stage)
  // Expert parallelism (MoE models): rank groups per stage that split the experts (each group
  // of `tensor` ranks splits its experts' width and its attention heads). Must divide the
  // model's experts.
  int expert = 1;
  // How the EP ranks run attention: "data" (each rank its own sequences, tokens sent to their
  // experts' ranks and back by all-to-all) or "replicated" (every rank every token, the ranks'
  // partial expert outputs summed by an all-reduce).
  std::string expert_attention = "data";
  // A TP group may span nodes (cpu backend): every all-reduce then crosses the network, which is
  // what benchmarks/slow_link_tp.sh measures; off, a node must hold whole TP groups.
  bool tensor_across_nodes = false;
};

struct NodeSpec {
  std::string name;
  std::string host = "127.0.0.1";
  std::vector<int> devices;  // CUDA device ids, or CPU "device" slots for the cpu backend
};

struct CoordinatorSpec {
  std::string host = "127.0.0.1";
  int port = 29500;
  double timeout_seconds = 120.0;            // all ranks registered and ready
  double collective_timeout_seconds = 30.0;  // one collective, before the group is declared dead
  double heartbeat_seconds = 2.0;            // worker liveness
};

struct SchedulerSpec {
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_waiting = 1024;
  int block_size = 16;
  size_t kv_cache_bytes = size_t{512} << 20;  // per rank (`kv_cache_mb` in YAML)
  std::string kv_cache_dtype = "f16";         // f16 (default), bf16 or f32 (twice the bytes)
  std::string decode_graphs = "auto";         // auto (CUDA only), on, off: worker::GraphMode
  bool enable_prefix_caching = true;
};

struct ListenSpec {
  std::string host = "127.0.0.1";
  int http_port = 8000;  // 0 = any free port
  int grpc_port = -1;    // -1 = no gRPC; 0 = any free port
  std::string api_key;
  // PEM files (both or neither): the HTTP and gRPC ports speak only TLS. Relative paths are
  // relative to the working directory, as model.path.
  std::string tls_cert;
  std::string tls_key;
};

struct LoggingSpec {
  std::string level = "info";  // trace | debug | info | warn | error | off
  std::string file;            // "" = stderr
};

// Where a key was written (1-based), so checks made after parsing can still name the line.
struct SourcePos {
  int line = 0;  // 0 = not written in the file (a default)
  int column = 0;
};

struct TopologyConfig {
  std::string source;  // file path (for messages)
  ModelSpec model;
  std::string backend = "cpu";  // cpu | cuda | guarded (the test device, see core/allocator.h)
  ParallelSpec parallel;
  std::vector<NodeSpec>
      nodes;  // never empty after parsing: no `nodes:` = one local node, T x P slots
  CoordinatorSpec coordinator;
  SchedulerSpec scheduler;
  ListenSpec listen;
  LoggingSpec logging;
  int threads_per_rank = 0;  // cpu backend: op threads per worker (0 = cores / local ranks)
  // cpu backend: int8 (integer dot products, the default) | fp32 (exact) activations in the
  // matmuls of Q4_0..Q8_0 and Q2_K..Q6_K weights; `serve --activations` overrides it.
  std::string cpu_activations = "int8";
  // Tensor parallelism: overlap each half of a step's all-reduces with the other half's compute
  // (ShardSpec::tp_overlap); `serve --tp-overlap` overrides it. Off until measured better.
  bool tp_overlap = false;
  // Sequence parallelism of the TP residual stream (ShardSpec::sequence_parallel);
  // `serve --sequence-parallel` overrides it.
  bool sequence_parallel = false;
  // Dotted key ("parallel.tensor", "nodes[1].devices") -> where it was written; filled by the
  // parser, read by validate_for_model for its messages. Keys left at their default are absent.
  std::map<std::string, SourcePos> positions;

  int world_size() const { return parallel.expert * parallel.tensor * parallel.pipeline; }
  // The first world rank on node `node_rank` and how many it hosts.
  int first_rank_of_node(int node_rank) const;
  int ranks_on_node(int node_rank) const;
  // The node that hosts world rank `rank`, and the device id it drives there (kOutOfRange
  // outside 0..world_size()-1, as for a bad node_rank above).
  int node_of_rank(int rank) const;
  int device_of_rank(int rank) const;
  // Layer counts per stage (layer_split, or an even split of num_layers with the extra layers on
  // the earlier stages), for validation: with no layer_split the engine picks its own split,
  // balanced by weight bytes. Throws kInvalidArgument when there are more stages than layers.
  std::vector<int> stage_layers(int num_layers) const;
};

// Throws tessera::Error(kInvalidArgument) with "FILE:LINE:COL: key 'a.b': problem (valid: ...)"
// (kNotFound when the file is missing). Bounded on hostile input: at most 1 MiB, 64 levels of
// nesting, 100000 values after alias expansion, one document; duplicate keys are errors.
TopologyConfig load_topology(const std::string& path);
TopologyConfig parse_topology(std::string_view yaml_text, const std::string& source_name);

// Checks the layout against the model once it is known: T divides the attention heads, the KV
// heads divide among (or are replicated across) the T ranks, layer_split sums to the layers and
// has P entries each >= 1. Throws kInvalidArgument naming the key (parallel.tensor, ...) and the
// valid choices (e.g. "valid tensor sizes for 9 heads: 1, 3, 9").
// num_experts (0: a dense model) checks parallel.expert: a dense model needs expert 1, a MoE
// model an expert count that divides its experts.
void validate_for_model(const TopologyConfig& c, int num_heads, int num_kv_heads, int num_layers,
                        int num_experts = 0);

}  // namespace tessera::config
