// This machine's ceilings, to put the kernel figures of ops_bench beside: memory read bandwidth
// (a large AVX2 streaming read, one thread and all OpenMP threads) and the fp32 FMA peak of one
// core (independent AVX2 FMA chains, enough of them to hide the FMA latency).
// The read buffer is on transparent huge pages where the kernel gives them (as the CPU backend's
// packed weights are: core/allocator.h make_host_arena), so the roofline is the best read this
// machine does; BM_SmallPageRead reads the same way from 4 KiB pages, for comparison.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr size_t kBytes = size_t{512} << 20;  // far beyond any last-level cache

struct Buffer {
  explicit Buffer(bool huge, size_t size = kBytes)
      : bytes((size + (size_t{2} << 20) - 1) / (size_t{2} << 20) * (size_t{2} << 20)),
        p(static_cast<float*>(std::aligned_alloc(size_t{2} << 20, bytes))) {
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);  // hints; refusals are fine
    std::memset(p, 1, bytes);  // touch every page so the benchmark reads real memory
  }
  ~Buffer() { std::free(p); }
  size_t bytes;
  float* p;
};

// Sums n floats from p; with kAhead > 0 each 128-byte step also prefetches kAhead bytes on (the
// packed int8 kernels do: on the Xeon VM one core streamed ~1.4x faster 16 KiB ahead than with
// the hardware prefetchers alone, so the read ceiling is measured both ways).
template <size_t kAhead>
__attribute__((target("avx2"))) float read_range(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    if constexpr (kAhead > 0) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i) + kAhead, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + i) + kAhead + 64, _MM_HINT_T0);
    }
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

template <size_t kAhead = 0>
void read_bench(benchmark::State& state, Buffer& buf) {
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2");
    return;
  }
  const int threads = state.range(0) == 0 ? omp_get_max_threads() : 1;
  const size_t n = buf.bytes / sizeof(float);
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
    for (int t = 0; t < threads; ++t) {
      const size_t chunk = n / static_cast<size_t>(threads);
      total += read_range<kAhead>(buf.p + static_cast<size_t>(t) * chunk, chunk);
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(buf.bytes));
  state.SetLabel(std::to_string(threads) + " thread(s)");
}
void BM_MemoryRead(benchmark::State& state) {
  static Buffer buf(true);  // allocated once for all runs of this benchmark
  read_bench(state, buf);
}
BENCHMARK(BM_MemoryRead)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
void BM_MemoryReadPrefetched(benchmark::State& state) {
  static Buffer buf(true);
  read_bench<16384>(state, buf);
}
BENCHMARK(BM_MemoryReadPrefetched)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
void BM_SmallPageRead(benchmark::State& state) {
  static Buffer buf(false);
  read_bench(state, buf);
}
BENCHMARK(BM_SmallPageRead)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

__attribute__((target("avx2,fma"))) float fma_loop(int64_t iters) {
  // 10 independent chains: 2 FMA ports x 4-5 cycles latency.
  __m256 a[10];
  for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  __m256 s = a[0];
  for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

void BM_FmaPeakOneCore(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    state.SkipWithError("no AVX2/FMA");
    return;
  }
  constexpr int64_t kIters = 1 << 20;
  for (auto _ : state) {
    int64_t iters = kIters;
    benchmark::DoNotOptimize(iters);  // opaque, so the pure loop cannot be hoisted or folded
    benchmark::DoNotOptimize(fma_loop(iters));
  }
  // 10 chains x 8 lanes x 2 FLOP per FMA.
  state.counters["FLOP/s"] = benchmark::Counter(
      static_cast<double>(kIters) * 10 * 8 * 2 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FmaPeakOneCore)->Unit(benchmark::kMillisecond);

}  // namespace

// --working-set-mib=N adds BM_WorkingSetRead (plain and prefetched, 1 and all threads) over a
// buffer of N MiB: a model's weights as big as that are read from wherever they fit (on the Xeon
// VM, 96 MiB sits in its 480 MiB L3 and one core reads it at ~21-27 GB/s against ~14 GB/s from
// DRAM), so a decode roofline takes the read of the model's own size.
int main(int argc, char** argv) {
  std::vector<char*> rest;
  size_t working_set = 0;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--working-set-mib=", 18) == 0)
      working_set = std::strtoull(argv[i] + 18, nullptr, 10) << 20;
    else
      rest.push_back(argv[i]);
  }
  if (working_set > 0) {
    for (const bool prefetch : {false, true}) {
      auto* b = benchmark::RegisterBenchmark(
          prefetch ? "BM_WorkingSetReadPrefetched" : "BM_WorkingSetRead",
          [working_set, prefetch](benchmark::State& state) {
            static Buffer buf(true, working_set);  // one per lambda: shared by both kinds
            if (prefetch)
              read_bench<16384>(state, buf);
            else
              read_bench(state, buf);
          });
      b->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
