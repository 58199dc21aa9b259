// The shipped configs parse and fit their models, the values reach the struct, defaults fill the
// rest, and the rank arithmetic (nodes, stages) is right.
#include "tessera/config/topology.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "config_test_util.h"

namespace tessera::config {
namespace {

using testing::contains;

std::string configs_dir() { return std::string(TESSERA_SOURCE_DIR) + "/configs"; }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int total_devices(const TopologyConfig& c) {
  int n = 0;
  for (const auto& node : c.nodes) n += static_cast<int>(node.devices.size());
  return n;
}

TEST(ShippedConfigs, AllPresentParseAndAreDocumented) {
  const std::set<std::string> expected = {
      "cpu.yaml", "cpu-tp3.yaml", "cpu-pp2.yaml",     "cpu-tp3-pp2.yaml",
      "gpu.yaml", "gpu-tp8.yaml", "gpu-tp8-pp2.yaml", "guarded-tp3-pp2.yaml"};
  std::set<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(configs_dir())) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    found.insert(name);
    const TopologyConfig c = load_topology(entry.path().string());
    EXPECT_EQ(c.source, entry.path().string());
    EXPECT_EQ(c.world_size(), total_devices(c));
    EXPECT_FALSE(c.model.path.empty());
    const std::string text = read_text(entry.path().string());
    EXPECT_TRUE(text.starts_with("# " + name + ":")) << "opens with a comment saying what it is";
    EXPECT_TRUE(contains(text, "tessera serve --config configs/" + name))
        << "says how to launch it";
    if (c.nodes.size() > 1) {
      EXPECT_TRUE(contains(text, "--node-rank 1"));
    }
    const bool cpu = name.starts_with("cpu"), guarded = name.starts_with("guarded");
    EXPECT_EQ(c.backend, cpu ? "cpu" : guarded ? "guarded" : "cuda");
    if (cpu || guarded || name == "gpu.yaml") {
      EXPECT_EQ(c.model.path, "smollm2-135m-instruct");
      validate_for_model(c, 9, 3, 30);  // SmolLM2-135M: 9 heads, 3 KV heads, 30 layers
      const auto stages = c.stage_layers(30);
      EXPECT_EQ(std::accumulate(stages.begin(), stages.end(), 0), 30);
    } else {
      validate_for_model(c, 64, 8, 80);  // the Llama-3-70B shape the placeholders stand for
    }
  }
  EXPECT_EQ(found, expected);
}

TEST(ShippedConfigs, LayoutsAreTheAdvertisedOnes) {
  const auto load = [](const char* name) { return load_topology(configs_dir() + "/" + name); };
  const TopologyConfig cpu = load("cpu.yaml");
  EXPECT_EQ(cpu.world_size(), 1);
  ASSERT_EQ(cpu.nodes.size(), 1u);
  EXPECT_EQ(cpu.nodes[0].host, "127.0.0.1");
  EXPECT_EQ(cpu.nodes[0].devices, std::vector<int>{0});

  const TopologyConfig tp3 = load("cpu-tp3.yaml");
  EXPECT_EQ(tp3.parallel.tensor, 3);
  EXPECT_EQ(tp3.parallel.pipeline, 1);

  const TopologyConfig pp2 = load("cpu-pp2.yaml");
  EXPECT_EQ(pp2.parallel.pipeline, 2);
  EXPECT_EQ(pp2.stage_layers(30), (std::vector<int>{15, 15}));

  const TopologyConfig both = load("cpu-tp3-pp2.yaml");
  EXPECT_EQ(both.parallel.tensor, 3);
  EXPECT_EQ(both.parallel.pipeline, 2);
  EXPECT_EQ(both.stage_layers(30), (std::vector<int>{15, 15}));

  const TopologyConfig gpu8 = load("gpu-tp8.yaml");
  ASSERT_EQ(gpu8.nodes.size(), 1u);
  EXPECT_EQ(gpu8.nodes[0].devices.size(), 8u);
  EXPECT_EQ(gpu8.parallel.tensor, 8);

  const TopologyConfig two = load("gpu-tp8-pp2.yaml");
  ASSERT_EQ(two.nodes.size(), 2u);
  EXPECT_EQ(two.nodes[0].host, "10.0.0.1");
  EXPECT_EQ(two.nodes[1].host, "10.0.0.2");
  EXPECT_EQ(two.coordinator.host, "10.0.0.1");
  EXPECT_EQ(two.world_size(), 16);
  EXPECT_EQ(two.first_rank_of_node(0), 0);
  EXPECT_EQ(two.first_rank_of_node(1), 8);
  EXPECT_EQ(two.ranks_on_node(1), 8);
  EXPECT_EQ(two.node_of_rank(7), 0);
  EXPECT_EQ(two.node_of_rank(9), 1);
  EXPECT_EQ(two.device_of_rank(9), 1);
  EXPECT_EQ(two.stage_layers(80), (std::vector<int>{40, 40}));
}

TEST(ShippedConfigs, ReadmeDocumentsEveryKey) {
  const std::string readme = read_text(configs_dir() + "/README.md");
  for (const char* key : {"path",
                          "served_name",
                          "dtype",
                          "max_model_len",
                          "backend",
                          "tensor",
                          "pipeline",
                          "layer_split",
                          "expert",
                          "expert_attention",
                          "name",
                          "host",
                          "devices",
                          "port",
                          "timeout_s",
                          "collective_timeout_s",
                          "heartbeat_s",
                          "max_num_seqs",
                          "max_num_batched_tokens",
                          "max_waiting",
                          "block_size",
                          "kv_cache_mb",
                          "kv_cache_dtype",
                          "decode_graphs",
                          "enable_prefix_caching",
                          "http_port",
                          "grpc_port",
                          "api_key",
                          "level",
                          "file",
                          "threads_per_rank",
                          "cpu_activations",
                          "tp_overlap",
                          "sequence_parallel"}) {
    EXPECT_TRUE(contains(readme, std::string("`") + key + "`")) << key;
  }
}

TEST(Topology, ValuesReachTheStruct) {
  const std::string yaml = R"(model:
  path: /m/model.gguf
  served_name: mine
  dtype: BF16
  max_model_len: 4096
backend: cuda
parallel: {tensor: 2, pipeline: 3, layer_split: [4, 3, 3]}
nodes:
  - {name: a, host: 10.1.1.1, devices: [3, 2]}
  - {host: 10.1.1.2, devices: [0, 1, 2, 3]}
coordinator: {host: 10.1.1.1, port: 1234, timeout_s: 5.5, collective_timeout_s: 1, heartbeat_s: 0.25}
scheduler:
  max_num_seqs: 7
  max_num_batched_tokens: 99
  max_waiting: 0
  block_size: 32
  kv_cache_mb: 3
  kv_cache_dtype: bf16
  decode_graphs: off
  enable_prefix_caching: no
listen: {host: 0.0.0.0, http_port: 0, grpc_port: 0, api_key: 12345, tls_cert: c.pem, tls_key: k.pem}
logging: {level: debug, file: /tmp/x.log}
threads_per_rank: 6
cpu_activations: fp32
)";
  const TopologyConfig c = parse_topology(yaml, "t.yaml");
  EXPECT_EQ(c.model.path, "/m/model.gguf");
  EXPECT_EQ(c.model.served_name, "mine");
  EXPECT_EQ(c.model.dtype, "bf16");
  EXPECT_EQ(c.model.max_model_len, 4096);
  EXPECT_EQ(c.backend, "cuda");
  EXPECT_EQ(c.parallel.tensor, 2);
  EXPECT_EQ(c.parallel.pipeline, 3);
  EXPECT_EQ(c.parallel.layer_split, (std::vector<int>{4, 3, 3}));
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_EQ(c.nodes[0].name, "a");
  EXPECT_EQ(c.nodes[0].devices, (std::vector<int>{3, 2}));
  EXPECT_EQ(c.nodes[1].name, "node1");
  EXPECT_EQ(c.coordinator.port, 1234);
  EXPECT_DOUBLE_EQ(c.coordinator.timeout_seconds, 5.5);
  EXPECT_DOUBLE_EQ(c.coordinator.collective_timeout_seconds, 1.0);
  EXPECT_DOUBLE_EQ(c.coordinator.heartbeat_seconds, 0.25);
  EXPECT_EQ(c.scheduler.max_num_seqs, 7);
  EXPECT_EQ(c.scheduler.max_num_batched_tokens, 99);
  EXPECT_EQ(c.scheduler.max_waiting, 0);
  EXPECT_EQ(c.scheduler.block_size, 32);
  EXPECT_EQ(c.scheduler.kv_cache_bytes, size_t{3} << 20);
  EXPECT_EQ(c.scheduler.kv_cache_dtype, "bf16");
  EXPECT_EQ(c.scheduler.decode_graphs, "off");
  EXPECT_EQ(parse_topology("model: {path: m.gguf}\n", "t.yaml").scheduler.decode_graphs, "auto");
  EXPECT_THROW(
      parse_topology("model: {path: m.gguf}\nscheduler: {decode_graphs: sometimes}\n", "t.yaml"),
      Error);
  EXPECT_EQ(parse_topology("model: {path: m.gguf}\n", "t.yaml").scheduler.kv_cache_dtype, "f16");
  EXPECT_FALSE(c.scheduler.enable_prefix_caching);
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.http_port, 0);
  EXPECT_EQ(c.listen.grpc_port, 0);
  EXPECT_EQ(c.listen.api_key, "12345");
  EXPECT_EQ(c.listen.tls_cert, "c.pem");
  EXPECT_EQ(c.listen.tls_key, "k.pem");
  EXPECT_EQ(c.logging.level, "debug");
  EXPECT_EQ(c.logging.file, "/tmp/x.log");
  EXPECT_EQ(c.threads_per_rank, 6);
  EXPECT_EQ(c.cpu_activations, "fp32");
  EXPECT_EQ(parse_topology("model: {path: m.gguf}\n", "t.yaml").cpu_activations, "int8");
  // Ranks: node 0 holds 2 (one TP group = stage 0), node 1 holds 4 (stages 1 and 2).
  EXPECT_EQ(c.first_rank_of_node(1), 2);
  EXPECT_EQ(c.device_of_rank(0), 3);
  EXPECT_EQ(c.device_of_rank(5), 3);
  EXPECT_EQ(c.stage_layers(10), (std::vector<int>{4, 3, 3}));
  EXPECT_EQ(c.positions.at("parallel.tensor").line, testing::line_of(yaml, "parallel:"));
  EXPECT_EQ(c.positions.at("scheduler.block_size").line, testing::line_of(yaml, "block_size"));
  validate_for_model(c, 8, 2, 10);
}

TEST(Topology, DefaultsFillWhatIsLeftOut) {
  const TopologyConfig c = parse_topology("model: {path: m}\n", "t.yaml");
  const TopologyConfig d;
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.model.dtype, "auto");
  EXPECT_EQ(c.world_size(), 1);
  ASSERT_EQ(c.nodes.size(), 1u);
  EXPECT_EQ(c.nodes[0].host, "127.0.0.1");
  EXPECT_EQ(c.nodes[0].devices, std::vector<int>{0});
  EXPECT_EQ(c.coordinator.port, d.coordinator.port);
  EXPECT_EQ(c.scheduler.kv_cache_bytes, d.scheduler.kv_cache_bytes);
  EXPECT_EQ(c.scheduler.enable_prefix_caching, d.scheduler.enable_prefix_caching);
  EXPECT_EQ(c.listen.http_port, d.listen.http_port);
  EXPECT_EQ(c.listen.grpc_port, -1);
  EXPECT_EQ(c.logging.level, "info");

  // No nodes: one local node with a slot per rank. Empty sections keep their defaults.
  const TopologyConfig tp = parse_topology(
      "model: {path: m}\nparallel: {tensor: 3, pipeline: 2}\nscheduler:\nlogging:\n", "t.yaml");
  ASSERT_EQ(tp.nodes.size(), 1u);
  EXPECT_EQ(tp.nodes[0].devices, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(tp.scheduler.max_num_seqs, d.scheduler.max_num_seqs);
}

TEST(Topology, StageLayersEvenSplitGivesEarlierStagesTheExtra) {
  TopologyConfig c;
  for (int p = 1; p <= 7; ++p) {
    c.parallel.pipeline = p;
    const auto s = c.stage_layers(30);
    ASSERT_EQ(s.size(), static_cast<size_t>(p));
    EXPECT_EQ(std::accumulate(s.begin(), s.end(), 0), 30);
    for (size_t i = 1; i < s.size(); ++i) {
      EXPECT_LE(s[i], s[i - 1]);
      EXPECT_LE(s[0] - s[i], 1);
    }
  }
  c.parallel.pipeline = 4;
  EXPECT_EQ(c.stage_layers(30), (std::vector<int>{8, 8, 7, 7}));
  EXPECT_THROW(c.stage_layers(3), Error);
}

TEST(Topology, RankHelpersRejectOutOfRange) {
  const TopologyConfig c = parse_topology(
      "model: {path: m}\nparallel: {tensor: 2}\nnodes: [{devices: [0, 1]}]\n", "t.yaml");
  EXPECT_EQ(c.ranks_on_node(0), 2);
  for (int bad : {-1, 1}) {
    try {
      c.first_rank_of_node(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
    }
    EXPECT_THROW(c.ranks_on_node(bad), Error);
  }
  EXPECT_THROW(c.node_of_rank(2), Error);
  EXPECT_THROW(c.node_of_rank(-1), Error);
}

TEST(Topology, LoadMissingFileIsNotFound) {
  try {
    load_topology(configs_dir() + "/no-such-file.yaml");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_TRUE(contains(e.what(), "no-such-file.yaml")) << e.what();
  }
  EXPECT_THROW(load_topology(configs_dir()), Error);  // a directory
}

}  // namespace
}  // namespace tessera::config
