// Decode and prefill (128 and 512 tokens) speed of the default model on the CPU backend, at 1 and
// 2 threads.
// Reports tokens/s (items_per_second) and the weight bytes streamed per second, to be put beside
// machine_bench's measured memory bandwidth: decode at batch 1 reads every weight once per token.
// The last argument picks the CPU path: 0 fp32 activations (the exact path), 1 int8 activations on
// the file's row-major weights, 2 int8 on weights packed 8 rows at a time (the default); it varies
// fastest, so the three paths of one configuration run back to back. The KV cache is F16, as
// `tessera serve` runs it by default (and llama-bench, the peer benchmark's other side).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "tessera/model/llama.h"
#include "tessera/model/local_runner.h"
#include "tessera/model/weights.h"
#include "tessera/ops/ops.h"

namespace {

constexpr tessera::DType kKvDtype = tessera::DType::kF16;  // serve's default cache

struct Loaded {
  std::unique_ptr<tessera::model::WeightSource> weights;
  std::unique_ptr<tessera::model::LlamaModel> model;
};

// The model as loaded under an activation mode and weight layout (ops::pack_weight decides at
// load time, so each combination gets its own copy; they load lazily, one per combination run).
Loaded* loaded(int64_t int8, int64_t packed) {
  namespace cpu = tessera::ops::cpu;
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Loaded>> models;
  auto& slot = models[{int8, packed}];
  if (slot) return slot.get();
  const char* env = std::getenv("TESSERA_BENCH_MODEL");
  std::string path = env ? env
                         : std::string(std::getenv("HOME")) +
                               "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) return nullptr;
  cpu::set_activations(int8 ? cpu::Activations::kInt8 : cpu::Activations::kF32);
  cpu::set_pack_weights(packed != 0);
  slot = std::make_unique<Loaded>();
  slot->weights = tessera::model::open_gguf_weights(path);
  slot->model = std::make_unique<tessera::model::LlamaModel>(*slot->weights);
  return slot.get();
}

void set_mode(benchmark::State& state, int64_t int8, int64_t packed) {
  namespace cpu = tessera::ops::cpu;
  cpu::set_activations(int8 ? cpu::Activations::kInt8 : cpu::Activations::kF32);
  state.SetLabel(int8 ? std::string("int8 ") + cpu::int8_isa() + (packed ? " packed" : " rows")
                      : std::string("fp32"));
}

// Benchmark arguments (threads, size, mode) with mode 0: fp32 activations, 1: int8 on row-major
// weights, 2: int8 on packed weights (the default).
void modes(benchmark::internal::Benchmark* b, std::initializer_list<int64_t> sizes) {
  for (int64_t threads : {1, 2})
    for (int64_t size : sizes)
      for (int64_t mode : {0, 1, 2}) b->Args({threads, size, mode});
}

// state.range(0): threads; state.range(1): batch (sequences decoding together); range(2): mode.
void BM_Decode(benchmark::State& state) {
  const int64_t int8 = state.range(2) > 0, packed = state.range(2) == 2;
  Loaded* l = loaded(int8, packed);
  if (!l) return state.SkipWithError("default model not downloaded");
  omp_set_num_threads(static_cast<int>(state.range(0)));
  set_mode(state, int8, packed);
  const int batch = static_cast<int>(state.range(1));
  const int context = 64;
  tessera::model::LocalRunner runner(*l->model, {.num_blocks = batch * 64, .kv_dtype = kKvDtype});
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
    ->Apply([](benchmark::internal::Benchmark* b) {
      modes(b, {1, 8});
    })
    ->ArgNames({"threads", "batch", "mode"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(60)
    ->UseRealTime();

// Batch-1 decode after a long prompt, default path only: attention reads the whole context's K
// and V every step (at 2048 tokens 94 MB of F32 K and V per token for this model, as much as its
// ~97 MB of weights), so
// this is where splitting a row's keys across threads shows. range(0): threads; range(1): context.
void BM_DecodeLongContext(benchmark::State& state) {
  Loaded* l = loaded(1, 1);
  if (!l) return state.SkipWithError("default model not downloaded");
  omp_set_num_threads(static_cast<int>(state.range(0)));
  set_mode(state, 1, 1);
  const int context = static_cast<int>(state.range(1));
  tessera::model::LocalRunner runner(*l->model,
                                     {.num_blocks = context / 16 + 8, .kv_dtype = kKvDtype});
  std::vector<int32_t> prompt(static_cast<size_t>(context));
  for (int i = 0; i < context; ++i) prompt[static_cast<size_t>(i)] = 100 + (i * 37) % 30000;
  const int seq = runner.add_sequence();
  tessera::model::LocalRunner::Chunk c{.seq = seq, .tokens = prompt};
  runner.step({&c, 1});
  const int32_t tok = 1234;
  const tessera::model::LocalRunner::Chunk next{.seq = seq, .tokens = {&tok, 1}};
  for (auto _ : state) benchmark::DoNotOptimize(runner.step({&next, 1}));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeLongContext)
    ->ArgsProduct({{1, 2}, {2048}})
    ->ArgNames({"threads", "context"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(32)
    ->UseRealTime();

void BM_Prefill(benchmark::State& state) {
  const int64_t int8 = state.range(2) > 0, packed = state.range(2) == 2;
  Loaded* l = loaded(int8, packed);
  if (!l) return state.SkipWithError("default model not downloaded");
  omp_set_num_threads(static_cast<int>(state.range(0)));
  set_mode(state, int8, packed);
  const int n = static_cast<int>(state.range(1));
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prompt[static_cast<size_t>(i)] = 100 + (i * 37) % 30000;
  for (auto _ : state) {
    tessera::model::LocalRunner runner(*l->model, {.num_blocks = n / 16 + 2, .kv_dtype = kKvDtype});
    tessera::model::LocalRunner::Chunk c{.seq = runner.add_sequence(), .tokens = prompt};
    benchmark::DoNotOptimize(runner.step({&c, 1}));
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Prefill)
    ->Apply([](benchmark::internal::Benchmark* b) {
      modes(b, {128, 512});
    })
    ->ArgNames({"threads", "tokens", "mode"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->UseRealTime();

}  // namespace

#include "isa_main.h"
