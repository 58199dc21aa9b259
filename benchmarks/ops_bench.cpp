// Kernel benchmarks for ops::cpu on the default model's shapes (SmolLM2-135M: hidden 576, FFN
// 1536, vocab 49152). Matmuls report weight bytes read per second (bytes_per_second) and
// FLOP/s, to set beside machine_bench's memory bandwidth and FMA peak.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "tessera/core/half.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/ops.h"

namespace {

using tessera::DType;
using tessera::Tensor;
namespace ops = tessera::ops;

constexpr DType kTypes[] = {DType::kF32,  DType::kQ8_0, DType::kQ4_1, DType::kQ4_K, DType::kQ6_K,
                            DType::kQ5_0, DType::kQ4_0, DType::kQ2_K, DType::kQ3_K, DType::kQ5_K};

// K-quants cannot be quantized in C++ (scripts/requantize_q4_k_m.py does it in numpy); random bits
// with small finite fp16 super-block scales take the same time through the kernels.
Tensor random_kquant(DType t, int64_t n, int64_t k) {
  std::mt19937 rng(42);
  Tensor w = Tensor::empty({n, k}, t);
  auto* p = static_cast<uint8_t*>(w.data());
  for (size_t i = 0; i < w.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng());
  const size_t bytes = static_cast<size_t>(tessera::dtype_info(t).block_bytes);
  for (size_t b = 0; b < w.nbytes() / bytes; ++b) {
    const uint16_t h = 0x1c00;  // 2^-8: finite, normal, and so are all products
    for (size_t at : tessera::kquant_half_fields(t)) std::memcpy(p + b * bytes + at, &h, 2);
  }
  return w;
}

Tensor random_weight(DType t, int64_t n, int64_t k) {
  if (tessera::is_kquant(t)) return random_kquant(t, n, k);
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor w = Tensor::empty({n, k}, t);
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    for (float& x : row) x = dist(rng);
    ops::quantize_row(t, row.data(), const_cast<uint8_t*>(w.row_ptr(r)), k);
  }
  return w;
}

Tensor random_f32(tessera::Shape shape) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  Tensor t = Tensor::empty(std::move(shape), DType::kF32);
  for (float& x : t.f32()) x = dist(rng);
  return t;
}

// Args: type index, N (weight rows), K, M (activation rows).
void BM_Matmul(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t n = state.range(1), k = state.range(2), m = state.range(3);
  // As a model loads it: packed where the CPU's int8 path packs (ops::pack_weight).
  Tensor w =
      ops::pack_weight(random_weight(t, n, k), tessera::default_allocator(tessera::Device::cpu()));
  Tensor x = random_f32({m, k});
  Tensor y = Tensor::empty({m, n}, DType::kF32);
  for (auto _ : state) {
    ops::matmul(x, w, Tensor(), y);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(tessera::dtype_name(w.dtype())) + " " + ops::cpu::simd_level() +
                 " int8 " + ops::cpu::int8_isa());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.nbytes()));
  state.counters["FLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(m * n * k) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  const int64_t shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
  for (int64_t m : {1, 64})
    for (int t = 0; t < static_cast<int>(std::size(kTypes)); ++t)
      for (auto& s : shapes)
        if (s[1] % tessera::dtype_info(kTypes[t]).block_elems == 0) b->Args({t, s[0], s[1], m});
  b->ArgNames({"type", "N", "K", "M"});
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();
}
BENCHMARK(BM_Matmul)->Apply(MatmulArgs);

// Row-count sweep on the FFN up shape (Q4_1, N=1536, K=576): where the fused one-pass kernels hand
// over to dequantize + sgemm (kMaxFusedM in src/ops/cpu/matmul.cpp), and prefill-size efficiency.
void MatmulRowsArgs(benchmark::internal::Benchmark* b) {
  for (int64_t m : {1, 2, 4, 8, 16, 24, 32, 42, 128}) b->Args({2, 1536, 576, m});
  b->ArgNames({"type", "N", "K", "M"});
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();
}
BENCHMARK(BM_Matmul)->Name("BM_MatmulRows")->Apply(MatmulRowsArgs);

// The LM head (Q8_0, the default model's tied embedding, N=49152 K=576) with and without
// MatmulTarget::fine_activations (the second digit for each row's largest outputs): its cost at
// decode (M=1) and batch (M=8) sizes. Args: fine (0/1), M.
void BM_LmHead(benchmark::State& state) {
  const bool fine = state.range(0) != 0;
  const int64_t n = 49152, k = 576, m = state.range(1);
  Tensor w = ops::pack_weight(random_weight(DType::kQ8_0, n, k),
                              tessera::default_allocator(tessera::Device::cpu()));
  Tensor x = random_f32({m, k}), none;
  Tensor y = Tensor::empty({m, n}, DType::kF32);
  const ops::MatmulTarget t{&w, &none, &y, fine};
  for (auto _ : state) {
    ops::matmul_many(x, {&t, 1});
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(tessera::dtype_name(w.dtype())) + " int8 " + ops::cpu::int8_isa());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.nbytes()));
}
BENCHMARK(BM_LmHead)
    ->ArgsProduct({{0, 1}, {1, 8}})
    ->ArgNames({"fine", "M"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Decode step of paged attention: Args: sequences, context length, cache type (0: F32, 1: F16,
// serve's default). 9 heads / 3 kv heads, hd 64.
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const DType kv = state.range(2) ? DType::kF16 : DType::kF32;
  const int H = 9, KVH = 3, HD = 64, BS = 16;
  const int blocks_per_seq = (ctx + BS - 1) / BS;
  const auto cache = [&] {
    Tensor f = random_f32({seqs * blocks_per_seq, BS, KVH, HD});
    if (kv == DType::kF32) return f;
    Tensor h = Tensor::empty(f.shape(), kv);
    for (int64_t i = 0; i < f.numel(); ++i)
      h.data_as<uint16_t>()[i] = tessera::f32_to_fp16(f.data_as<float>()[i]);
    return h;
  };
  const Tensor kc = cache(), vc = cache();
  Tensor q = random_f32({seqs, H * HD});
  Tensor out = Tensor::empty({seqs, H * HD}, DType::kF32);
  std::vector<int32_t> qs(static_cast<size_t>(seqs) + 1), lens(static_cast<size_t>(seqs), ctx),
      tables(static_cast<size_t>(seqs * blocks_per_seq));
  for (int s = 0; s <= seqs; ++s) qs[static_cast<size_t>(s)] = s;
  for (size_t i = 0; i < tables.size(); ++i)
    tables[i] = static_cast<int32_t>(tables.size() - 1 - i);
  const ops::AttentionBatch batch{qs, lens, tables, blocks_per_seq};
  const ops::AttentionParams p{H, KVH, HD, BS, 0.125f};
  for (auto _ : state) {
    ops::paged_attention(q, kc, vc, batch, p, out);
    benchmark::DoNotOptimize(out.data());
  }
  // K and V bytes read per step.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * seqs * ctx * KVH * HD *
                          (kv == DType::kF32 ? 4 : 2));
  state.counters["FLOP/s"] =
      benchmark::Counter(4.0 * seqs * ctx * H * HD * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.SetLabel(std::string(tessera::dtype_name(kv)));
}
BENCHMARK(BM_PagedAttentionDecode)
    ->ArgsProduct({{1}, {96, 512, 2048}, {0, 1}})
    ->ArgsProduct({{8}, {512, 2048}, {0, 1}})
    ->ArgNames({"seqs", "ctx", "f16"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_RmsNormSiluSoftmax(benchmark::State& state) {
  Tensor x = random_f32({1, 1536}), w = random_f32({1536}),
         y = Tensor::empty({1, 1536}, DType::kF32);
  Tensor logits = random_f32({1, 49152});
  for (auto _ : state) {
    ops::rms_norm(x, w, 1e-5f, y);
    ops::silu_mul(x, w, y);
    ops::softmax(logits);
    benchmark::DoNotOptimize(y.data());
  }
}
BENCHMARK(BM_RmsNormSiluSoftmax)->Unit(benchmark::kMicrosecond);

}  // namespace

#include "isa_main.h"
