// Decode and prefill (128 and 512 tokens) speed of the default model on the CPU backend, at 1 and
// 2 threads.
// Reports tokens/s (items_per_second) and the weight bytes streamed per second, to be put beside
// machine_bench's measured memory bandwidth: decode at batch 1 reads every weight once per token.
// The last argument picks the CPU activation mode (int8: 1, the integer dot products; 0: fp32, the
// exact path); it varies fastest, so the two modes of one configuration run back to back.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "tessera/model/llama.h"
#include "tessera/model/local_runner.h"
#include "tessera/model/weights.h"
#include "tessera/ops/ops.h"

namespace {

struct Loaded {
  std::unique_ptr<tessera::model::WeightSource> weights;
  std::unique_ptr<tessera::model::LlamaModel> model;
};

Loaded* loaded() {
  static Loaded* l = [] {
    const char* env = std::getenv("TESSERA_BENCH_MODEL");
    std::string path = env ? env
                           : std::string(std::getenv("HOME")) +
                                 "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) return static_cast<Loaded*>(nullptr);
    auto* x = new Loaded;
    x->weights = tessera::model::open_gguf_weights(path);
    x->model = std::make_unique<tessera::model::LlamaModel>(*x->weights);
    return x;
  }();
  return l;
}

void set_mode(benchmark::State& state, int64_t int8) {
  namespace cpu = tessera::ops::cpu;
  cpu::set_activations(int8 ? cpu::Activations::kInt8 : cpu::Activations::kF32);
  state.SetLabel(int8 ? std::string("int8 ") + cpu::int8_isa() : std::string("fp32"));
}

// state.range(0): threads; state.range(1): batch (sequences decoding together); range(2): int8.
void BM_Decode(benchmark::State& state) {
  Loaded* l = loaded();
  if (!l) return state.SkipWithError("default model not downloaded");
  omp_set_num_threads(static_cast<int>(state.range(0)));
  set_mode(state, state.range(2));
  const int batch = static_cast<int>(state.range(1));
  const int context = 64;
  tessera::model::LocalRunner runner(*l->model, {.num_blocks = batch * 64});
  std::vector<int> seqs;
  std::vector<int32_t> prompt(context, 1000);
  for (int b = 0; b < batch; ++b) {
    seqs.push_back(runner.add_sequence());
    tessera::model::LocalRunner::Chunk c{.seq = seqs.back(), .tokens = prompt};
    runner.step({&c, 1});
  }
  const int32_t tok = 1234;
  std::vector<tessera::model::LocalRunner::Chunk> chunks;
  for (int s : seqs) chunks.push_back({.seq = s, .tokens = {&tok, 1}});
  for (auto _ : state) {
    if (runner.length(seqs[0]) + 1 >= 900) state.SkipWithError("context exhausted");
    benchmark::DoNotOptimize(runner.step(chunks));
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(l->model->weight_bytes()) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)
    ->ArgsProduct({{1, 2}, {1, 8}, {0, 1}})
    ->ArgNames({"threads", "batch", "int8"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(60)
    ->UseRealTime();

void BM_Prefill(benchmark::State& state) {
  Loaded* l = loaded();
  if (!l) return state.SkipWithError("default model not downloaded");
  omp_set_num_threads(static_cast<int>(state.range(0)));
  set_mode(state, state.range(2));
  const int n = static_cast<int>(state.range(1));
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prompt[static_cast<size_t>(i)] = 100 + (i * 37) % 30000;
  for (auto _ : state) {
    tessera::model::LocalRunner runner(*l->model, {.num_blocks = n / 16 + 2});
    tessera::model::LocalRunner::Chunk c{.seq = runner.add_sequence(), .tokens = prompt};
    benchmark::DoNotOptimize(runner.step({&c, 1}));
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Prefill)
    ->ArgsProduct({{1, 2}, {128, 512}, {0, 1}})
    ->ArgNames({"threads", "tokens", "int8"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
