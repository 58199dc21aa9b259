// Each class of mistake an operator can make gets an error naming the key, the line it is on (as
// counted in the test's own YAML) and the valid choices.
#include <gtest/gtest.h>

#include "config_test_util.h"
#include "tessera/config/topology.h"

namespace tessera::config {
namespace {

using testing::contains;
using testing::expect_error_at;
using testing::line_of;
using testing::parse_error;

// A valid two-node T=3 x P=2 layout; cases replace one piece of it.
const std::string kBase = R"(# a test topology
model:
  path: m
backend: cpu
parallel:
  tensor: 3
  pipeline: 2
nodes:
  - name: a
    host: 127.0.0.1
    devices: [0, 1, 2]
  - name: b
    host: 127.0.0.1
    devices: [0, 1, 2]
scheduler:
  max_num_seqs: 8
  enable_prefix_caching: true
listen:
  http_port: 8000
  grpc_port: -1
logging:
  level: info
)";

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(ConfigErrors, BaseIsValid) { EXPECT_NO_THROW(parse_topology(kBase, "t.yaml")); }

TEST(ConfigErrors, UnknownKeyListsTheKeysOfItsLevel) {
  std::string y = replace(kBase, "backend: cpu", "backend: cpu\nmodle: x");
  expect_error_at(parse_error(y), "modle", line_of(y, "modle"),
                  "model, backend, parallel, nodes, coordinator, scheduler, listen, logging, "
                  "threads_per_rank, cpu_activations");

  y = replace(kBase, "  pipeline: 2", "  pipeline: 2\n  tensr: 3");
  std::string msg = parse_error(y);
  expect_error_at(msg, "parallel.tensr", line_of(y, "tensr"), "tensor, pipeline, layer_split");
  EXPECT_TRUE(contains(msg, "did you mean 'tensor'")) << msg;

  y = replace(kBase, "    host: 127.0.0.1\n    devices: [0, 1, 2]\nscheduler",
              "    hots: 127.0.0.1\n    devices: [0, 1, 2]\nscheduler");
  expect_error_at(parse_error(y), "nodes[1].hots", line_of(y, "hots"), "name, host, devices");
}

TEST(ConfigErrors, WrongTypeNamesWhatWasFound) {
  std::string y = replace(kBase, "tensor: 3", "tensor: three");
  std::string msg = parse_error(y);
  expect_error_at(msg, "parallel.tensor", line_of(y, "tensor: three"), "1..1024");
  EXPECT_TRUE(contains(msg, "expected an integer, got 'three'")) << msg;

  y = replace(kBase, "http_port: 8000", "http_port: \"8000\"");  // quoted: a string
  msg = parse_error(y);
  expect_error_at(msg, "listen.http_port", line_of(y, "http_port"), "0..65535");
  EXPECT_TRUE(contains(msg, "quoted string")) << msg;

  y = replace(kBase, "tensor: 3", "tensor: 1.5");
  expect_error_at(parse_error(y), "parallel.tensor", line_of(y, "tensor: 1.5"), "1..1024");

  y = replace(kBase, "enable_prefix_caching: true", "enable_prefix_caching: 2");
  expect_error_at(parse_error(y), "scheduler.enable_prefix_caching",
                  line_of(y, "enable_prefix_caching"), "true, false");

  y = replace(kBase, "model:\n  path: m", "model: m");
  expect_error_at(parse_error(y), "model", line_of(y, "model: m"),
                  "path, served_name, dtype, max_model_len");

  y = replace(kBase, "devices: [0, 1, 2]", "devices: 0");
  msg = parse_error(y);
  expect_error_at(msg, "nodes[0].devices", line_of(y, "devices: 0"), "a list of device ids");
  EXPECT_TRUE(contains(msg, "expected a list")) << msg;

  y = replace(kBase, "max_num_seqs: 8", "max_num_seqs: [8]");
  msg = parse_error(y);
  expect_error_at(msg, "scheduler.max_num_seqs", line_of(y, "max_num_seqs"), "1..65536");
  EXPECT_TRUE(contains(msg, "got a list")) << msg;
}

TEST(ConfigErrors, OutOfRangeNumbers) {
  struct Case {
    std::string from, to, needle, key, valid;  // needle: text on the offending line
  };
  const Case cases[] = {
      {"http_port: 8000", "http_port: 70000", "70000", "listen.http_port", "0..65535"},
      {"http_port: 8000", "http_port: -1", "http_port", "listen.http_port", "0..65535"},
      {"grpc_port: -1", "grpc_port: -2", "grpc_port", "listen.grpc_port", "-1 (no gRPC)"},
      {"max_num_seqs: 8", "max_num_seqs: 0", "max_num_seqs", "scheduler.max_num_seqs", "1..65536"},
      {"max_num_seqs: 8", "max_num_seqs: 99999999999999999999999", "max_num_seqs",
       "scheduler.max_num_seqs", "1..65536"},
      {"tensor: 3", "tensor: 0", "tensor", "parallel.tensor", "1..1024"},
      {"logging:", "coordinator:\n  timeout_s: -1\nlogging:", "timeout_s", "coordinator.timeout_s",
       "> 0"},
      {"logging:", "coordinator:\n  heartbeat_s: .nan\nlogging:", "heartbeat_s",
       "coordinator.heartbeat_s", "> 0"},
      {"logging:", "coordinator:\n\n  port: 65536\nlogging:", "port: 65536", "coordinator.port",
       "0..65535"},
      {"devices: [0, 1, 2]", "devices: [0, -1, 2]", "-1", "nodes[0].devices[1]", "0..4095"},
      {"level: info", "level: info\nthreads_per_rank: 5000", "threads_per_rank", "threads_per_rank",
       "thread count"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.to);
    const std::string y = replace(kBase, c.from, c.to);
    const std::string msg = parse_error(y);
    expect_error_at(msg, c.key, line_of(y, c.needle), c.valid);
    EXPECT_TRUE(contains(msg, "out of range") || contains(msg, "expected a number")) << msg;
  }
}

TEST(ConfigErrors, EnumValuesListTheChoices) {
  std::string y = replace(kBase, "backend: cpu", "backend: tpu");
  expect_error_at(parse_error(y), "backend", line_of(y, "backend"), "cpu, cuda, guarded");
  y = replace(kBase, "backend: cpu", "backend: cpu\ncpu_activations: int4");
  expect_error_at(parse_error(y), "cpu_activations", line_of(y, "cpu_activations"), "int8, fp32");
  y = replace(kBase, "max_num_seqs: 8", "max_num_seqs: 8\n  kv_cache_dtype: fp8");
  expect_error_at(parse_error(y), "scheduler.kv_cache_dtype", line_of(y, "kv_cache_dtype"),
                  "f32, f16, bf16");
  y = replace(kBase, "  path: m", "  path: m\n  dtype: f64");
  expect_error_at(parse_error(y), "model.dtype", line_of(y, "dtype"), "auto, f32, f16, bf16");
  y = replace(kBase, "level: info", "level: verbose");
  expect_error_at(parse_error(y), "logging.level", line_of(y, "level"),
                  "trace, debug, info, warn, error, off");
}

TEST(ConfigErrors, TensorTimesPipelineMustMatchTheDevices) {
  const std::string y =
      replace(kBase, "devices: [0, 1, 2]\nscheduler", "devices: [0, 1]\nscheduler");
  const std::string msg = parse_error(y);
  // Nodes of 3 and 2 devices: only T=1 keeps every TP group inside a node.
  expect_error_at(msg, "parallel", line_of(y, "tensor: 3"), "tensor: 1 pipeline: 5");
  EXPECT_TRUE(contains(msg, "3 x 2 = 6 ranks, but the nodes list 5 devices")) << msg;
  EXPECT_TRUE(contains(msg, "nodes[1] 'b': 2")) << msg;
}

TEST(ConfigErrors, TensorGroupMustStayInsideANode) {
  std::string y = replace(kBase, "devices: [0, 1, 2]", "devices: [0, 1, 2, 3]");
  y = replace(y, "devices: [0, 1, 2]\nscheduler", "devices: [0, 1]\nscheduler");
  const std::string msg = parse_error(y);
  expect_error_at(msg, "nodes[0].devices", line_of(y, "devices: [0, 1, 2, 3]"),
                  "tensor: 2 pipeline: 3");
  EXPECT_TRUE(contains(msg, "node 'a' has 4 devices, not a multiple of parallel.tensor = 3"))
      << msg;
}

TEST(ConfigErrors, TensorAcrossNodesLiftsTheOneNodeRuleOnly) {
  // T=2 over two nodes of one slot each: refused by default, accepted when asked for.
  std::string y = replace(kBase, "  tensor: 3\n  pipeline: 2", "  tensor: 2");
  y = replace(y, "devices: [0, 1, 2]", "devices: [0]");
  y = replace(y, "devices: [0, 1, 2]", "devices: [0]");
  EXPECT_TRUE(contains(parse_error(y), "parallel.tensor_across_nodes")) << y;
  const std::string ok = replace(y, "  tensor: 2", "  tensor: 2\n  tensor_across_nodes: true");
  const TopologyConfig c = parse_topology(ok, "t.yaml");
  EXPECT_TRUE(c.parallel.tensor_across_nodes);
  EXPECT_FALSE(c.tp_overlap);
  EXPECT_TRUE(parse_topology(ok + "tp_overlap: true\n", "t.yaml").tp_overlap);
  // The device count must still match T x P.
  const std::string three = replace(ok, "devices: [0]", "devices: [0, 1]");
  EXPECT_TRUE(contains(parse_error(three), "tensor x pipeline = 2 x 1 = 2 ranks")) << three;
  EXPECT_TRUE(contains(parse_error(ok + "tp_overlap: maybe\n"), "tp_overlap"));
  EXPECT_FALSE(c.sequence_parallel);
  EXPECT_TRUE(parse_topology(ok + "sequence_parallel: true\n", "t.yaml").sequence_parallel);
  EXPECT_TRUE(contains(parse_error(ok + "sequence_parallel: 2\n"), "sequence_parallel"));
}

TEST(ConfigErrors, LayerSplitNeedsOneEntryPerStageEachAtLeastOne) {
  std::string y = replace(kBase, "  pipeline: 2", "  pipeline: 2\n  layer_split: [10, 10, 10]");
  std::string msg = parse_error(y);
  expect_error_at(msg, "parallel.layer_split", line_of(y, "layer_split"), "2 entries, each >= 1");
  EXPECT_TRUE(contains(msg, "has 3 entries but parallel.pipeline is 2")) << msg;

  y = replace(kBase, "  pipeline: 2", "  pipeline: 2\n  layer_split:\n    - 10\n    - 0");
  expect_error_at(parse_error(y), "parallel.layer_split[1]", line_of(y, "- 0"), ">= 1");
}

TEST(ConfigErrors, DuplicateDeviceIdsAndEmptyNodes) {
  std::string y = replace(kBase, "devices: [0, 1, 2]", "devices:\n      - 0\n      - 1\n      - 1");
  std::string msg = parse_error(y);
  expect_error_at(msg, "nodes[0].devices", line_of(y, "- 1", 2), "distinct device ids");
  EXPECT_TRUE(contains(
      msg, "listed twice on this node (first at line " + std::to_string(line_of(y, "- 1")) + ")"))
      << msg;

  y = replace(kBase, "devices: [0, 1, 2]\nscheduler", "devices: []\nscheduler");
  msg = parse_error(y);
  expect_error_at(msg, "nodes[1].devices", line_of(y, "devices: []"), "non-empty list");
  EXPECT_TRUE(contains(msg, "no devices")) << msg;

  y = replace(kBase, "    host: 127.0.0.1\n    devices: [0, 1, 2]\nscheduler", "scheduler");
  expect_error_at(parse_error(y), "nodes[1].devices", line_of(y, "name: b"), "non-empty list");

  y = replace(kBase, "name: b", "name: a");
  expect_error_at(parse_error(y), "nodes[1].name", line_of(y, "name: a", 2), "a distinct name");
}

TEST(ConfigErrors, ModelPathIsRequired) {
  std::string y = replace(kBase, "  path: m\n", "  dtype: f16\n");
  expect_error_at(parse_error(y), "model.path", line_of(y, "model:"), "smollm2-135m-instruct");
  y = replace(kBase, "model:\n  path: m\n", "");
  std::string msg = parse_error(y);
  EXPECT_TRUE(contains(msg, "key 'model.path'")) << msg;
  EXPECT_TRUE(contains(msg, "(valid: ")) << msg;
  msg = parse_error("");
  EXPECT_TRUE(contains(msg, "key 'model.path'")) << msg;
  y = replace(kBase, "path: m", "path: \"\"");
  expect_error_at(parse_error(y), "model.path", line_of(y, "path:"), "known name");
}

TEST(ConfigErrors, DuplicateKeysPointAtTheSecond) {
  std::string y = replace(kBase, "logging:", "backend: cuda\nlogging:");
  std::string msg = parse_error(y);
  expect_error_at(msg, "backend", line_of(y, "backend", 2), "each key once");
  EXPECT_TRUE(contains(msg, "first written at line " + std::to_string(line_of(y, "backend"))))
      << msg;

  y = replace(kBase, "    devices: [0, 1, 2]\nscheduler",
              "    devices: [0, 1, 2]\n    name: c\nscheduler");
  expect_error_at(parse_error(y), "nodes[1].name", line_of(y, "name: c"), "each key once");

  y = replace(kBase, "parallel:", "parallel:\n  tensor: 1");
  expect_error_at(parse_error(y), "parallel.tensor", line_of(y, "tensor: 3"), "each key once");
}

TEST(ConfigErrors, CrossSectionChecks) {
  // Several nodes with the coordinator on loopback while a node is elsewhere.
  std::string y = replace(kBase, "    host: 127.0.0.1\n    devices: [0, 1, 2]\nscheduler",
                          "    host: 10.0.0.2\n    devices: [0, 1, 2]\ncoordinator:\n  host: "
                          "localhost\nscheduler");
  expect_error_at(parse_error(y), "coordinator.host", line_of(y, "host: localhost"),
                  "an address of nodes[0]");
  y = replace(kBase, "logging:", "coordinator: {port: 0}\nlogging:");
  expect_error_at(parse_error(y), "coordinator.port", line_of(y, "port: 0"), "1..65535");
  y = replace(kBase, "grpc_port: -1", "grpc_port: 8000");
  expect_error_at(parse_error(y), "listen.grpc_port", line_of(y, "grpc_port"), "a different port");
  // TLS needs both files: the error names the missing key, at the one that was given.
  y = replace(kBase, "grpc_port: -1", "grpc_port: -1\n  tls_cert: /etc/c.pem");
  std::string msg = parse_error(y);
  expect_error_at(msg, "listen.tls_key", line_of(y, "tls_cert"), "or neither");
  EXPECT_TRUE(contains(msg, "listen.tls_cert is set")) << msg;
  y = replace(kBase, "grpc_port: -1", "grpc_port: -1\n  tls_key: /etc/k.pem");
  expect_error_at(parse_error(y), "listen.tls_cert", line_of(y, "tls_key"), "or neither");
  y = replace(kBase, "grpc_port: -1", "grpc_port: -1\n  tls_cert: ''\n  tls_key: k.pem");
  expect_error_at(parse_error(y), "listen.tls_cert", line_of(y, "tls_cert"), "a PEM file path");
}

TEST(ConfigErrors, SyntaxErrorsCarryTheirPosition) {
  std::string y = replace(kBase, "tensor: 3", "tensor: [3");
  std::string msg = parse_error(y);
  EXPECT_TRUE(msg.starts_with("t.yaml:")) << msg;
  EXPECT_TRUE(contains(msg, "not valid YAML")) << msg;

  y = kBase + "---\nmodel: {path: x}\n";
  msg = parse_error(y);
  EXPECT_TRUE(msg.starts_with("t.yaml:" + std::to_string(line_of(y, "---")) + ":")) << msg;
  EXPECT_TRUE(contains(msg, "one YAML document")) << msg;

  // A stray top-level ',' makes yaml-cpp's LoadAll loop on empty documents; must be an error.
  y = replace(kBase, "model:", ",odel:");
  msg = parse_error(y);
  EXPECT_TRUE(msg.starts_with("t.yaml:" + std::to_string(line_of(y, ",odel")) + ":")) << msg;
  EXPECT_TRUE(contains(msg, "stray ','")) << msg;

  msg = parse_error("[1, 2]\n");
  EXPECT_TRUE(contains(msg, "expected a map of keys, got a list")) << msg;

  y = replace(kBase, "logging:", "? [a, b]\n: 1\nlogging:");
  msg = parse_error(y);
  EXPECT_TRUE(msg.starts_with("t.yaml:" + std::to_string(line_of(y, "? [a, b]")) + ":")) << msg;
  EXPECT_TRUE(contains(msg, "a key must be a plain name")) << msg;
}

// Checks against the model once it is loaded: messages still carry the key's line.
TEST(ConfigErrors, ValidateForModel) {
  auto parsed = [](const std::string& y) { return parse_topology(y, "t.yaml"); };
  std::string y = replace(kBase, "tensor: 3", "tensor: 2");
  y = replace(y, "devices: [0, 1, 2]", "devices: [0, 1]");
  y = replace(y, "devices: [0, 1, 2]", "devices: [0, 1]");
  const TopologyConfig t2 = parsed(y);
  try {
    validate_for_model(t2, 9, 3, 30);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.tensor", line_of(y, "tensor: 2"),
                    "tensor sizes for 9 heads and 3 KV heads: 1, 3, 9");
    EXPECT_TRUE(contains(e.what(), "2 does not divide the model's 9 attention heads")) << e.what();
  }
  validate_for_model(t2, 32, 8, 30);  // T=2 is fine for a 32/8 model

  // 24 heads, 8 KV heads: T=6 divides the heads but neither splits nor replicates 8 KV heads.
  y = replace(kBase, "tensor: 3", "tensor: 6");
  y = replace(y, "pipeline: 2", "pipeline: 1");
  y = replace(y, "devices: [0, 1, 2]", "devices: [0, 1, 2, 3, 4, 5]");
  y = replace(y, "  - name: b\n    host: 127.0.0.1\n    devices: [0, 1, 2]\n", "");
  const TopologyConfig t6 = parsed(y);
  try {
    validate_for_model(t6, 24, 8, 30);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.tensor", line_of(y, "tensor: 6"), ": 1, 2, 4, 8, 24)");
    EXPECT_TRUE(contains(e.what(), "8 KV heads")) << e.what();
  }

  y = replace(kBase, "  pipeline: 2", "  pipeline: 2\n  layer_split: [10, 10]");
  const TopologyConfig split = parsed(y);
  validate_for_model(split, 9, 3, 20);
  try {
    validate_for_model(split, 9, 3, 30);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.layer_split", line_of(y, "layer_split"), "summing to 30");
  }

  const TopologyConfig p2 = parsed(kBase);
  try {
    validate_for_model(p2, 9, 3, 1);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.pipeline", line_of(kBase, "pipeline: 2"), "1..1");
  }
}

// parallel.expert: the world is E x T x P; E with T > 1 is refused at parse time; against the
// model, E must divide the experts and a dense model needs 1.
TEST(ConfigErrors, ExpertParallelLayout) {
  const std::string y = "model: {path: m}\nparallel:\n  expert: 2\n  pipeline: 2\n";
  const TopologyConfig c = parse_topology(y, "t.yaml");
  EXPECT_EQ(c.parallel.expert, 2);
  EXPECT_EQ(c.parallel.expert_attention, "data");  // the default
  EXPECT_EQ(
      parse_topology(y + "  expert_attention: replicated\n", "t.yaml").parallel.expert_attention,
      "replicated");
  try {
    parse_topology(y + "  expert_attention: tensor\n", "t.yaml");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "parallel.expert_attention")) << e.what();
    EXPECT_TRUE(contains(e.what(), "replicated")) << e.what();
  }
  EXPECT_EQ(c.world_size(), 4);
  EXPECT_EQ(c.nodes.at(0).devices.size(), 4u);
  validate_for_model(c, 4, 2, 4, 8);
  validate_for_model(c, 4, 2, 4, 6);  // 2 divides 6
  try {
    validate_for_model(c, 4, 2, 4, 3);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.expert", line_of(y, "expert: 2"),
                    "expert sizes for 3 experts: 1, 3");
    EXPECT_TRUE(contains(e.what(), "2 does not divide the model's 3 experts")) << e.what();
  }
  try {
    validate_for_model(c, 4, 2, 4, 0);
    ADD_FAILURE();
  } catch (const Error& e) {
    expect_error_at(e.what(), "parallel.expert", line_of(y, "expert: 2"), "1");
    EXPECT_TRUE(contains(e.what(), "dense model")) << e.what();
  }
  // EP x TP: each of the 2 EP groups is a TP group of 2.
  const std::string both = "model: {path: m}\nparallel:\n  expert: 2\n  tensor: 2\n";
  EXPECT_EQ(parse_topology(both, "t.yaml").world_size(), 4);
  const std::string few = "model: {path: m}\nparallel: {expert: 2}\nnodes:\n  - devices: [0]\n";
  try {
    parse_topology(few, "t.yaml");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "expert x tensor x pipeline = 2 x 1 x 1 = 2 ranks")) << e.what();
  }
}

}  // namespace
}  // namespace tessera::config
