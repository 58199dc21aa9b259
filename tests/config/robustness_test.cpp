// Hostile and broken files: deep nesting, alias bombs, oversized input and random mutations of a
// valid config either parse or throw tessera::Error (never crash, never another exception).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "config_test_util.h"
#include "tessera/config/topology.h"

namespace tessera::config {
namespace {

using testing::contains;
using testing::parse_error;

TEST(ConfigRobustness, DeepFlowNestingIsRejected) {
  for (const auto& [open, close] : {std::pair{"[", "]"}, std::pair{"{a: ", "}"}}) {
    std::string y = "model: {path: m}\nx: ";
    for (int i = 0; i < 20000; ++i) y += open;
    for (int i = 0; i < 20000; ++i) y += close;
    const std::string msg = parse_error(y);
    EXPECT_TRUE(msg.starts_with("t.yaml:2:")) << msg.substr(0, 200);
    EXPECT_TRUE(contains(msg, "nested deeper than 64 levels")) << msg.substr(0, 200);
  }
}

TEST(ConfigRobustness, DeepBlockNestingIsRejected) {
  std::string y = "model: {path: m}\nx:\n  ";
  for (int i = 0; i < 20000; ++i) y += "- ";
  y += "1\n";
  std::string msg = parse_error(y);
  EXPECT_TRUE(contains(msg, "nested deeper than 64 levels")) << msg.substr(0, 200);

  // 100 levels of indented maps: under the pre-scan's column bound, caught by the tree walk.
  y = "model: {path: m}\n";
  for (int i = 0; i < 100; ++i) y += std::string(static_cast<size_t>(2 * i), ' ') + "k:\n";
  y += std::string(200, ' ') + "v\n";
  msg = parse_error(y);
  EXPECT_TRUE(contains(msg, "nested deeper than 64 levels")) << msg.substr(0, 200);
}

TEST(ConfigRobustness, AliasBombIsRejected) {
  // Nine levels of nine aliases: 9^9 values if expanded.
  std::string y = "model: {path: m}\nl0: &l0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    y += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) y += (j ? ", *l" : "*l") + std::to_string(i - 1);
    y += "]\n";
  }
  std::string msg = parse_error(y);
  EXPECT_TRUE(contains(msg, "alias bomb")) << msg;

  // The same bomb under a known key (where the schema would read it).
  y += "nodes: *l9\n";
  msg = parse_error(y);
  EXPECT_TRUE(contains(msg, "alias bomb")) << msg;

  // A sequence that contains itself (yaml-cpp registers the anchor before the children).
  msg = parse_error("model: {path: m}\nx: &s [*s]\n");
  EXPECT_FALSE(msg.empty());
}

TEST(ConfigRobustness, HarmlessAliasesStillWork) {
  const TopologyConfig c = parse_topology(
      "model: {path: m}\nparallel: {tensor: 2, pipeline: 2}\n"
      "nodes:\n  - {host: 10.0.0.1, devices: &gpus [0, 1]}\n  - {host: 10.0.0.2, devices: *gpus}\n"
      "coordinator: {host: 10.0.0.1}\n",
      "t.yaml");
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_EQ(c.nodes[1].devices, (std::vector<int>{0, 1}));
}

TEST(ConfigRobustness, OversizedInputIsRejected) {
  std::string y = "model: {path: m}\n";
  y += std::string(2 << 20, '#');
  EXPECT_TRUE(contains(parse_error(y), "at most")) << "a 2 MiB file";
}

// Lines of a shipped config, mutated 1-3 times per trial.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string mutate(std::vector<std::string> lines, std::mt19937& rng) {
  static const char* kGarbage[] = {"",       "-1",  "70000", "[",          "{a: 1}",    "*x",
                                   "&a",     "'",   "\"",    "!!binary x", "1e999",     "~",
                                   "[[[]]]", "- x", "\t",    "0x10",       ": :",       "&a [*a]",
                                   "true",   "3.5", "null",  "{",          "%YAML 1.2", "? x"};
  const int n = 1 + static_cast<int>(rng() % 3);
  for (int m = 0; m < n && !lines.empty(); ++m) {
    const size_t i = rng() % lines.size();
    switch (rng() % 6) {
      case 0:
        lines.erase(lines.begin() + static_cast<long>(i));
        break;
      case 1:
        lines.insert(lines.begin() + static_cast<long>(i), lines[i]);
        break;
      case 2: {  // a value to garbage
        const size_t colon = lines[i].find(':');
        const std::string g = kGarbage[rng() % std::size(kGarbage)];
        lines[i] = colon == std::string::npos ? g : lines[i].substr(0, colon + 1) + " " + g;
        break;
      }
      case 3:  // re-indent
        lines[i] = std::string(rng() % 6, ' ') + lines[i];
        break;
      case 4: {  // a random byte somewhere
        if (lines[i].empty()) break;
        lines[i][rng() % lines[i].size()] = static_cast<char>(rng() % 256);
        break;
      }
      default:
        std::swap(lines[i], lines[rng() % lines.size()]);
    }
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

void fuzz(const std::string& name, uint32_t seed, int trials) {
  SCOPED_TRACE(name + " seed " + std::to_string(seed));
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/configs/" + name);
  std::ostringstream text;
  text << in.rdbuf();
  const auto lines = split_lines(text.str());
  ASSERT_GT(lines.size(), 5u);
  std::mt19937 rng(seed);
  int ok = 0, rejected = 0;
  for (int t = 0; t < trials; ++t) {
    const std::string y = mutate(lines, rng);
    try {
      const TopologyConfig c = parse_topology(y, name);
      ++ok;
      EXPECT_EQ(c.world_size(), [&] {
        int d = 0;
        for (const auto& node : c.nodes) d += static_cast<int>(node.devices.size());
        return d;
      }()) << y;
      try {
        validate_for_model(c, 9, 3, 30);
        EXPECT_EQ(c.stage_layers(30).size(), static_cast<size_t>(c.parallel.pipeline));
      } catch (const Error&) {
      }
    } catch (const Error& e) {
      ++rejected;
      EXPECT_TRUE(std::string(e.what()).starts_with(name + ":")) << e.what();
    }
    // Anything else (a yaml-cpp exception, std::bad_alloc, ...) escapes and fails the test.
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(rejected, 0);
}

TEST(ConfigRobustness, MutationsParseOrThrowErrorFixedSeed) {
  fuzz("cpu.yaml", 20240601u, 300);
  fuzz("gpu-tp8-pp2.yaml", 20240602u, 200);
}

TEST(ConfigRobustness, MutationsParseOrThrowErrorFreshSeed) {
  const uint32_t seed = std::random_device{}();
  fuzz("cpu-tp3-pp2.yaml", seed, 300);
}

}  // namespace
}  // namespace tessera::config
