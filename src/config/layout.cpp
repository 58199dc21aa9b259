// Rank arithmetic over a parsed topology (which node hosts which world rank, layers per stage)
// and the checks that need the model's shape (heads, KV heads, layers), made once it is loaded.
#include <algorithm>

#include "tessera/config/topology.h"
#include "tessera/core/error.h"
#include "yaml_check.h"

namespace tessera::config {
namespace {

SourcePos pos_or(const TopologyConfig& c, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    const auto it = c.positions.find(k);
    if (it != c.positions.end()) return it->second;
  }
  return {};
}

// Tensor sizes this model can be split into: T divides the attention heads, and the KV heads
// either divide among the T ranks or each KV head is replicated on T / kv ranks.
std::string valid_tensor_sizes(int heads, int kv_heads) {
  std::string out;
  for (int t = 1; t <= heads; ++t) {
    if (heads % t == 0 && (kv_heads % t == 0 || t % kv_heads == 0)) {
      out += detail::concat(out.empty() ? "" : ", ", t);
    }
  }
  return detail::concat("tensor sizes for ", heads, " heads and ", kv_heads, " KV heads: ", out);
}

void check_node_index(const TopologyConfig& c, int node_rank) {
  if (node_rank < 0 || node_rank >= static_cast<int>(c.nodes.size())) {
    fail(ErrorCode::kOutOfRange, c.source, ": node rank ", node_rank,
         " is out of range (the config has ", c.nodes.size(), " nodes: 0..",
         static_cast<int>(c.nodes.size()) - 1, ")");
  }
}

}  // namespace

int TopologyConfig::first_rank_of_node(int node_rank) const {
  check_node_index(*this, node_rank);
  int first = 0;
  for (int i = 0; i < node_rank; ++i) first += static_cast<int>(nodes[i].devices.size());
  return first;
}

int TopologyConfig::ranks_on_node(int node_rank) const {
  check_node_index(*this, node_rank);
  return static_cast<int>(nodes[node_rank].devices.size());
}

int TopologyConfig::node_of_rank(int rank) const {
  int first = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const int n = static_cast<int>(nodes[i].devices.size());
    if (rank >= first && rank < first + n) return static_cast<int>(i);
    first += n;
  }
  fail(ErrorCode::kOutOfRange, source, ": world rank ", rank, " is out of range (the nodes host ",
       first, " ranks)");
}

int TopologyConfig::device_of_rank(int rank) const {
  const int node = node_of_rank(rank);
  return nodes[node].devices[rank - first_rank_of_node(node)];
}

std::vector<int> TopologyConfig::stage_layers(int num_layers) const {
  const int p = parallel.pipeline;
  if (!parallel.layer_split.empty()) return parallel.layer_split;
  if (p < 1 || num_layers < p) {
    fail(ErrorCode::kInvalidArgument, source, ": key 'parallel.pipeline': ", p,
         " stages for a model of ", num_layers, " layers (valid: 1..", num_layers, ")");
  }
  // Earlier stages take the extra layer: the last stage also runs the final norm and LM head.
  std::vector<int> out(static_cast<size_t>(p), num_layers / p);
  for (int s = 0; s < num_layers % p; ++s) ++out[static_cast<size_t>(s)];
  return out;
}

void validate_for_model(const TopologyConfig& c, int num_heads, int num_kv_heads, int num_layers,
                        int num_experts) {
  if (num_heads < 1 || num_kv_heads < 1 || num_layers < 1 || num_heads % num_kv_heads != 0) {
    fail(ErrorCode::kInvalidArgument, c.source, ": the model's shape is inconsistent (", num_heads,
         " heads, ", num_kv_heads, " KV heads, ", num_layers, " layers)");
  }
  const int t = c.parallel.tensor;
  const int p = c.parallel.pipeline;
  const int e = c.parallel.expert;
  if (e > 1) {
    const SourcePos epos = pos_or(c, {"parallel.expert", "parallel"});
    if (num_experts == 0)
      detail::fail_at(c.source, epos, "parallel.expert",
                      detail::concat(e, " expert-parallel ranks for a dense model (no experts)"),
                      "1");
    if (num_experts % e != 0) {
      std::string valid;
      for (int d = 1; d <= num_experts; ++d)
        if (num_experts % d == 0) valid += detail::concat(valid.empty() ? "" : ", ", d);
      detail::fail_at(c.source, epos, "parallel.expert",
                      detail::concat(e, " does not divide the model's ", num_experts, " experts"),
                      detail::concat("expert sizes for ", num_experts, " experts: ", valid));
    }
  }
  const SourcePos tpos = pos_or(c, {"parallel.tensor", "parallel"});
  if (num_heads % t != 0) {
    detail::fail_at(
        c.source, tpos, "parallel.tensor",
        detail::concat(t, " does not divide the model's ", num_heads, " attention heads"),
        valid_tensor_sizes(num_heads, num_kv_heads));
  }
  if (num_kv_heads % t != 0 && t % num_kv_heads != 0) {
    detail::fail_at(c.source, tpos, "parallel.tensor",
                    detail::concat("the model's ", num_kv_heads,
                                   " KV heads can neither be divided among nor replicated across ",
                                   t, " ranks"),
                    valid_tensor_sizes(num_heads, num_kv_heads));
  }
  if (p > num_layers) {
    detail::fail_at(c.source, pos_or(c, {"parallel.pipeline", "parallel"}), "parallel.pipeline",
                    detail::concat(p, " stages for a model of ", num_layers, " layers"),
                    detail::concat("1..", num_layers));
  }
  const auto& split = c.parallel.layer_split;
  if (!split.empty()) {
    const SourcePos spos = pos_or(c, {"parallel.layer_split", "parallel"});
    if (static_cast<int>(split.size()) != p) {
      detail::fail_at(c.source, spos, "parallel.layer_split",
                      detail::concat("has ", split.size(), " entries but parallel.pipeline is ", p),
                      detail::concat(p, " layer counts, each >= 1, summing to ", num_layers));
    }
    long long sum = 0;
    for (int n : split) {
      if (n < 1) {
        detail::fail_at(c.source, spos, "parallel.layer_split",
                        detail::concat("a stage has ", n, " layers"),
                        detail::concat(p, " layer counts, each >= 1, summing to ", num_layers));
      }
      sum += n;
    }
    if (sum != num_layers) {
      detail::fail_at(
          c.source, spos, "parallel.layer_split",
          detail::concat("the stages hold ", sum, " layers but the model has ", num_layers),
          detail::concat(p, " layer counts, each >= 1, summing to ", num_layers));
    }
  }
}

}  // namespace tessera::config
