// Per-step dispatch cost of the worker group (issue: "kept in the tens of microseconds"): the
// engine encodes one plan, writes it to every rank's persistent connection, each rank decodes it
// and answers, the engine polls all ranks and decodes the answers. BM_GroupRoundTrip measures that
// whole path with real worker processes on an empty plan (no model compute), BM_EncodePlan the
// encoding of a decode plan of N sequences that rides on top of it.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "tessera/engine/worker_group.h"
#include "tessera/protocol/codec.h"

namespace {

std::string model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string tessera_bin() {
  if (const char* b = std::getenv("TESSERA_BIN")) return b;
  return std::string(TESSERA_BINARY_DIR) + "/tessera";
}

tessera::protocol::ExecutePlan decode_plan(int seqs) {
  tessera::protocol::ExecutePlan p;
  for (int s = 0; s < seqs; ++s) {
    std::vector<int32_t> table(16);
    for (int b = 0; b < 16; ++b) table[static_cast<size_t>(b)] = s * 16 + b;
    p.chunks.push_back({static_cast<uint64_t>(s), {1234}, 250, table, true});
  }
  return p;
}

void BM_EncodePlan(benchmark::State& state) {
  const auto plan = decode_plan(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    auto payload = tessera::protocol::encode_plan(plan);
    bytes = payload.size();
    benchmark::DoNotOptimize(payload.data());
  }
  state.counters["plan_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_EncodePlan)->Arg(1)->Arg(8)->Arg(64)->Unit(benchmark::kMicrosecond);

// range(0) = pipeline stages (one rank each), range(1) = tensor ranks per stage.
void BM_GroupRoundTrip(benchmark::State& state) {
  if (!std::filesystem::exists(model_path()) || !std::filesystem::exists(tessera_bin())) {
    state.SkipWithError("needs the default model and the tessera binary");
    return;
  }
  tessera::engine::WorkerGroupExecutor g(
      {.executable = tessera_bin(),
       .worker = {.model_path = model_path(), .num_blocks = 64, .kv_cache_bytes = 0},
       .tensor = static_cast<int>(state.range(1)),
       .pipeline = static_cast<int>(state.range(0)),
       .threads_per_rank = 1});
  const tessera::protocol::ExecutePlan empty;
  for (auto _ : state) benchmark::DoNotOptimize(g.execute(empty));
  state.counters["ranks"] = static_cast<double>(state.range(0) * state.range(1));
}
BENCHMARK(BM_GroupRoundTrip)
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({1, 3})
    ->Args({2, 3})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
