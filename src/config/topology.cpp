// The topology schema: which keys exist at each level, their types and ranges, and the checks
// across sections (T x P against the devices, TP groups inside a node, reachability of the
// coordinator). The YAML hardening lives in yaml_check.cpp; the model-dependent checks and the
// rank arithmetic in layout.cpp.
#include "tessera/config/topology.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tessera/core/error.h"
#include "yaml_check.h"

namespace tessera::config {
namespace {

using detail::fail_at;
using detail::Field;

constexpr long long kMaxParallel = 1024;
constexpr long long kMaxDeviceId = 4095;
constexpr double kMaxSeconds = 86400.0;
constexpr std::string_view kPemValid = "a PEM file path, e.g. /etc/tessera/cert.pem";
constexpr std::string_view kModelPathValid =
    "a model file, directory or known name, e.g. smollm2-135m-instruct";

void parse_model(const Field& s, TopologyConfig& c) {
  detail::for_each_key(s.source, s.value, s.key, s.pos, "model.",
                       {"path", "served_name", "dtype", "max_model_len"}, [&](const Field& f) {
                         c.positions[f.key] = f.pos;
                         if (f.key == "model.path") {
                           c.model.path = detail::read_string(f, false, kModelPathValid);
                         } else if (f.key == "model.served_name") {
                           c.model.served_name = detail::read_string(f, true);
                         } else if (f.key == "model.dtype") {
                           c.model.dtype = detail::read_enum(f, {"auto", "f32", "f16", "bf16"});
                         } else {
                           c.model.max_model_len = static_cast<int>(detail::read_int(
                               f, 0, 1 << 24, "0 (the model's context) or a length in tokens"));
                         }
                       });
}

void parse_parallel(const Field& s, TopologyConfig& c) {
  detail::for_each_key(
      s.source, s.value, s.key, s.pos, "parallel.",
      {"tensor", "pipeline", "layer_split", "micro_batches", "expert", "expert_attention",
       "tensor_across_nodes"},
      [&](const Field& f) {
        c.positions[f.key] = f.pos;
        if (f.key == "parallel.tensor_across_nodes") {
          c.parallel.tensor_across_nodes = detail::read_bool(f);
        } else if (f.key == "parallel.tensor") {
          c.parallel.tensor = static_cast<int>(detail::read_int(f, 1, kMaxParallel));
        } else if (f.key == "parallel.expert_attention") {
          c.parallel.expert_attention = detail::read_enum(f, {"data", "replicated"});
        } else if (f.key == "parallel.expert") {
          c.parallel.expert = static_cast<int>(detail::read_int(f, 1, kMaxParallel));
        } else if (f.key == "parallel.pipeline") {
          c.parallel.pipeline = static_cast<int>(detail::read_int(f, 1, kMaxParallel));
        } else if (f.key == "parallel.micro_batches") {
          c.parallel.micro_batches = static_cast<int>(
              detail::read_int(f, 0, kMaxParallel, "0 (= pipeline) or plans in flight"));
        } else {
          detail::expect_sequence(f, "a list of layer counts, one per stage, e.g. [15, 15]");
          size_t i = 0;
          for (const YAML::Node& n : f.value) {
            const SourcePos p = detail::pos_of(n);
            const Field e{.source = f.source,
                          .key = detail::concat(f.key, "[", i++, "]"),
                          .pos = p.line > 0 ? p : f.pos,
                          .value = n};
            c.parallel.layer_split.push_back(static_cast<int>(
                detail::read_int(e, 1, 1 << 20, "a layer count >= 1 (each stage needs a layer)")));
          }
        }
      });
}

NodeSpec parse_node(const Field& f, size_t index, TopologyConfig& c) {
  NodeSpec spec;
  const std::string key = detail::concat("nodes[", index, "]");
  const SourcePos npos = detail::pos_of(f.value).line > 0 ? detail::pos_of(f.value) : f.pos;
  c.positions[key] = npos;
  detail::for_each_key(
      f.source, f.value, key, npos, key + ".", {"name", "host", "devices"}, [&](const Field& k) {
        c.positions[k.key] = k.pos;
        if (k.key.ends_with(".name")) {
          spec.name = detail::read_string(k, false, "a node name");
        } else if (k.key.ends_with(".host")) {
          spec.host = detail::read_string(k, false, "a host name or IP address");
        } else {
          detail::expect_sequence(k, "a list of device ids, e.g. [0, 1]");
          std::map<int, SourcePos> seen;
          size_t j = 0;
          for (const YAML::Node& n : k.value) {
            const SourcePos p = detail::pos_of(n).line > 0 ? detail::pos_of(n) : k.pos;
            const Field e{.source = k.source,
                          .key = detail::concat(k.key, "[", j++, "]"),
                          .pos = p,
                          .value = n};
            const int id = static_cast<int>(detail::read_int(e, 0, kMaxDeviceId));
            auto [first, fresh] = seen.emplace(id, p);
            if (!fresh) {
              fail_at(k.source, p, k.key,
                      detail::concat("device ", id, " is listed twice on this node (first at line ",
                                     first->second.line, ")"),
                      "distinct device ids");
            }
            spec.devices.push_back(id);
          }
        }
      });
  if (spec.devices.empty()) {
    const auto it = c.positions.find(key + ".devices");
    fail_at(f.source, it != c.positions.end() ? it->second : npos, key + ".devices",
            "the node has no devices", "a non-empty list of device ids, e.g. [0, 1]");
  }
  if (spec.name.empty()) spec.name = detail::concat("node", index);
  return spec;
}

void parse_nodes(const Field& f, TopologyConfig& c) {
  detail::expect_sequence(f, "a list of nodes, each {name, host, devices}");
  if (f.value.size() == 0)
    fail_at(f.source, f.pos, f.key, "the list is empty", "one or more nodes");
  size_t i = 0;
  for (const YAML::Node& n : f.value) {
    const Field e{
        .source = f.source, .key = detail::concat("nodes[", i, "]"), .pos = f.pos, .value = n};
    NodeSpec spec = parse_node(e, i, c);
    for (size_t k = 0; k < c.nodes.size(); ++k) {
      if (c.nodes[k].name == spec.name) {
        fail_at(f.source, c.positions[detail::concat("nodes[", i, "]")],
                detail::concat("nodes[", i, "].name"),
                detail::concat("name '", spec.name, "' is already used by nodes[", k, "]"),
                "a distinct name per node");
      }
    }
    c.nodes.push_back(std::move(spec));
    ++i;
  }
}

void parse_coordinator(const Field& s, TopologyConfig& c) {
  detail::for_each_key(
      s.source, s.value, s.key, s.pos, "coordinator.",
      {"host", "port", "timeout_s", "collective_timeout_s", "heartbeat_s"}, [&](const Field& f) {
        c.positions[f.key] = f.pos;
        if (f.key == "coordinator.host") {
          c.coordinator.host = detail::read_string(f, false, "a host name or IP address");
        } else if (f.key == "coordinator.port") {
          c.coordinator.port = static_cast<int>(detail::read_int(f, 0, 65535));
        } else if (f.key == "coordinator.timeout_s") {
          c.coordinator.timeout_seconds = detail::read_positive_seconds(f, kMaxSeconds);
        } else if (f.key == "coordinator.collective_timeout_s") {
          c.coordinator.collective_timeout_seconds = detail::read_positive_seconds(f, kMaxSeconds);
        } else {
          c.coordinator.heartbeat_seconds = detail::read_positive_seconds(f, kMaxSeconds);
        }
      });
}

void parse_scheduler(const Field& s, TopologyConfig& c) {
  detail::for_each_key(
      s.source, s.value, s.key, s.pos, "scheduler.",
      {"max_num_seqs", "max_num_batched_tokens", "max_waiting", "block_size", "kv_cache_mb",
       "kv_cache_dtype", "decode_graphs", "enable_prefix_caching"},
      [&](const Field& f) {
        c.positions[f.key] = f.pos;
        SchedulerSpec& sc = c.scheduler;
        if (f.key == "scheduler.max_num_seqs") {
          sc.max_num_seqs = static_cast<int>(detail::read_int(f, 1, 1 << 16));
        } else if (f.key == "scheduler.max_num_batched_tokens") {
          sc.max_num_batched_tokens = static_cast<int>(detail::read_int(f, 1, 1 << 24));
        } else if (f.key == "scheduler.max_waiting") {
          sc.max_waiting = static_cast<int>(detail::read_int(f, 0, 1 << 24));
        } else if (f.key == "scheduler.block_size") {
          sc.block_size = static_cast<int>(detail::read_int(f, 1, 1024));
        } else if (f.key == "scheduler.kv_cache_mb") {
          sc.kv_cache_bytes =
              static_cast<size_t>(detail::read_int(f, 1, 1 << 24, "1..16777216 MiB")) << 20;
        } else if (f.key == "scheduler.kv_cache_dtype") {
          sc.kv_cache_dtype = detail::read_enum(f, {"f32", "f16", "bf16"});
        } else if (f.key == "scheduler.decode_graphs") {
          sc.decode_graphs = detail::read_enum(f, {"auto", "on", "off"});
        } else {
          sc.enable_prefix_caching = detail::read_bool(f);
        }
      });
}

void parse_listen(const Field& s, TopologyConfig& c) {
  detail::for_each_key(
      s.source, s.value, s.key, s.pos, "listen.",
      {"host", "http_port", "grpc_port", "api_key", "tls_cert", "tls_key"}, [&](const Field& f) {
        c.positions[f.key] = f.pos;
        if (f.key == "listen.host") {
          c.listen.host = detail::read_string(f, false, "a bind address, e.g. 0.0.0.0");
        } else if (f.key == "listen.http_port") {
          c.listen.http_port =
              static_cast<int>(detail::read_int(f, 0, 65535, "0..65535 (0 = any free port)"));
        } else if (f.key == "listen.grpc_port") {
          c.listen.grpc_port = static_cast<int>(
              detail::read_int(f, -1, 65535, "-1 (no gRPC), 0 (any free port) or 1..65535"));
        } else if (f.key == "listen.api_key") {
          c.listen.api_key = detail::read_string(f, true);
        } else if (f.key == "listen.tls_cert") {
          c.listen.tls_cert = detail::read_string(f, false, kPemValid);
        } else {
          c.listen.tls_key = detail::read_string(f, false, kPemValid);
        }
      });
}

void parse_logging(const Field& s, TopologyConfig& c) {
  detail::for_each_key(
      s.source, s.value, s.key, s.pos, "logging.", {"level", "file"}, [&](const Field& f) {
        c.positions[f.key] = f.pos;
        if (f.key == "logging.level") {
          c.logging.level =
              detail::read_enum(f, {"trace", "debug", "info", "warn", "error", "off"});
        } else {
          c.logging.file = detail::read_string(f, true);
        }
      });
}

SourcePos pos_or(const TopologyConfig& c, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    const auto it = c.positions.find(k);
    if (it != c.positions.end()) return it->second;
  }
  return {};
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

// T x P against the nodes, TP groups inside nodes, and the coordinator's reachability.
void check_layout(TopologyConfig& c) {
  const int t = c.parallel.tensor;
  const int p = c.parallel.pipeline;
  const int e = c.parallel.expert;
  const std::string& src = c.source;

  if (!c.parallel.layer_split.empty() && static_cast<int>(c.parallel.layer_split.size()) != p) {
    fail_at(src, pos_or(c, {"parallel.layer_split"}), "parallel.layer_split",
            detail::concat("has ", c.parallel.layer_split.size(),
                           " entries but parallel.pipeline is ", p),
            detail::concat("one layer count per stage: ", p, " entries, each >= 1"));
  }
  if (c.nodes.empty()) {  // no `nodes:`: one local node with one slot per rank
    NodeSpec local{.name = "node0"};
    for (int d = 0; d < e * t * p; ++d) local.devices.push_back(d);
    c.nodes.push_back(std::move(local));
  }
  int total = 0;
  std::string per_node;
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    total += static_cast<int>(c.nodes[i].devices.size());
    per_node += detail::concat(i ? ", " : "", "nodes[", i, "] '", c.nodes[i].name,
                               "': ", c.nodes[i].devices.size());
  }
  // The layouts these nodes allow: T divides every node's device count, P = total / T.
  std::string layouts;
  for (int cand = 1; cand <= total; ++cand) {
    const bool ok = std::all_of(c.nodes.begin(), c.nodes.end(), [&](const NodeSpec& n) {
      return n.devices.size() % static_cast<size_t>(cand) == 0;
    });
    if (ok && total % cand == 0) {
      layouts += detail::concat(layouts.empty() ? "" : "; ", "tensor: ", cand,
                                " pipeline: ", total / cand);
    }
  }
  if (e * t * p != total) {
    fail_at(
        src,
        pos_or(c, {"parallel.tensor", "parallel.pipeline", "parallel.expert", "parallel", "nodes"}),
        "parallel",
        e > 1 ? detail::concat("expert x tensor x pipeline = ", e, " x ", t, " x ", p, " = ",
                               e * t * p, " ranks, but the nodes list ", total, " devices (",
                               per_node, ")")
              : detail::concat("tensor x pipeline = ", t, " x ", p, " = ", t * p,
                               " ranks, but the nodes list ", total, " devices (", per_node, ")"),
        detail::concat(layouts, ", or list ", e * t * p, " devices"));
  }
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    if (!c.parallel.tensor_across_nodes &&
        c.nodes[i].devices.size() % static_cast<size_t>(t) != 0) {
      const std::string key = detail::concat("nodes[", i, "].devices");
      fail_at(src, pos_or(c, {key.c_str(), "nodes"}), key,
              detail::concat("node '", c.nodes[i].name, "' has ", c.nodes[i].devices.size(),
                             " devices, not a multiple of parallel.tensor = ", t,
                             " (a tensor-parallel group must stay inside one node unless "
                             "parallel.tensor_across_nodes is true)"),
              layouts);
    }
  }
  if (c.nodes.size() > 1) {
    if (c.coordinator.port == 0) {
      fail_at(src, pos_or(c, {"coordinator.port", "coordinator"}), "coordinator.port",
              "0 (any free port) cannot be used with several nodes: the others must know it",
              "1..65535");
    }
    if (is_loopback(c.coordinator.host)) {
      for (size_t i = 0; i < c.nodes.size(); ++i) {
        if (!is_loopback(c.nodes[i].host)) {
          fail_at(src, pos_or(c, {"coordinator.host", "coordinator", "nodes"}), "coordinator.host",
                  detail::concat("'", c.coordinator.host, "' is a loopback address, but nodes[", i,
                                 "] is on ", c.nodes[i].host, " and could not reach it"),
                  detail::concat("an address of nodes[0], e.g. ", c.nodes[0].host));
        }
      }
    }
  }
  if (c.listen.http_port > 0 && c.listen.http_port == c.listen.grpc_port) {
    fail_at(src, pos_or(c, {"listen.grpc_port"}), "listen.grpc_port",
            detail::concat(c.listen.grpc_port, " is also listen.http_port"),
            "a different port, 0 (any free port) or -1 (no gRPC)");
  }
  if (c.listen.tls_cert.empty() != c.listen.tls_key.empty()) {
    const bool has_cert = !c.listen.tls_cert.empty();
    fail_at(src, pos_or(c, {has_cert ? "listen.tls_cert" : "listen.tls_key", "listen"}),
            has_cert ? "listen.tls_key" : "listen.tls_cert",
            has_cert ? "missing: listen.tls_cert is set, TLS needs the private key too"
                     : "missing: listen.tls_key is set, TLS needs the certificate too",
            "both listen.tls_cert and listen.tls_key, or neither");
  }
}

TopologyConfig parse_checked(std::string_view text, const std::string& src) {
  detail::prescan(text, src);
  const YAML::Node root = detail::parse_yaml(text, src);
  detail::check_tree(root, src);
  TopologyConfig c;
  c.source = src;
  if (root.IsNull()) {
    fail_at(src, {}, "model.path", "the config is empty; model.path is required", kModelPathValid);
  }
  detail::for_each_key(
      src, root, "(top level)", detail::pos_of(root), "",
      {"model", "backend", "parallel", "nodes", "coordinator", "scheduler", "listen", "logging",
       "threads_per_rank", "cpu_activations", "tp_overlap", "sequence_parallel"},
      [&](const Field& f) {
        c.positions[f.key] = f.pos;
        if (f.key == "model") {
          parse_model(f, c);
        } else if (f.key == "backend") {
          c.backend = detail::read_enum(f, {"cpu", "cuda", "guarded"});
        } else if (f.key == "parallel") {
          parse_parallel(f, c);
        } else if (f.key == "nodes") {
          parse_nodes(f, c);
        } else if (f.key == "coordinator") {
          parse_coordinator(f, c);
        } else if (f.key == "scheduler") {
          parse_scheduler(f, c);
        } else if (f.key == "listen") {
          parse_listen(f, c);
        } else if (f.key == "logging") {
          parse_logging(f, c);
        } else if (f.key == "cpu_activations") {
          c.cpu_activations = detail::read_enum(f, {"int8", "fp32"});
        } else if (f.key == "tp_overlap") {
          c.tp_overlap = detail::read_bool(f);
        } else if (f.key == "sequence_parallel") {
          c.sequence_parallel = detail::read_bool(f);
        } else {
          c.threads_per_rank = static_cast<int>(
              detail::read_int(f, 0, 4096, "0 (cores / local ranks) or a thread count"));
        }
      });
  if (c.model.path.empty()) {
    fail_at(src, pos_or(c, {"model"}), "model.path", "missing: which model to serve",
            kModelPathValid);
  }
  check_layout(c);
  return c;
}

}  // namespace

TopologyConfig parse_topology(std::string_view yaml_text, const std::string& source_name) {
  try {
    return parse_checked(yaml_text, source_name);
  } catch (const YAML::Exception& e) {
    // A safety net: every yaml-cpp call above is on a checked node, so this is not expected.
    SourcePos pos;
    if (!e.mark.is_null()) pos = {.line = e.mark.line + 1, .column = e.mark.column + 1};
    fail_at(source_name, pos, "", detail::concat("invalid YAML: ", e.msg));
  }
}

TopologyConfig load_topology(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(ErrorCode::kNotFound, "config file ", path, " not found");
  }
  if (!std::filesystem::is_regular_file(status)) {
    fail(ErrorCode::kInvalidArgument, "config ", path, " is not a regular file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > detail::kMaxConfigBytes) {
    fail(ErrorCode::kInvalidArgument, path, ": the config is ", size,
         " bytes; a topology file is at most ", detail::kMaxConfigBytes, " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, "cannot open config file ", path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_topology(text.str(), path);
}

}  // namespace tessera::config
