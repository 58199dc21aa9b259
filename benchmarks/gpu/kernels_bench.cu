// Timings of the CUDA launchers (kernels/model_ops.h, kernels/matmul.h) at serving shapes, with
// CUDA events: median of 20 launches after 3 warm-ups, on random data. Standalone (no GoogleTest,
// no Google Benchmark) so that benchmarks/gpu/run.sh can build it with nvcc on a bare GPU machine
// (CI compiles the same sources as the CMake target kernels_bench, warnings as errors):
//   nvcc -O3 -std=c++17 -arch=native -Ikernels/include -Iinclude -Isrc/ops
//        benchmarks/gpu/kernels_bench.cu benchmarks/gpu/matmul_bench.cu
//        src/ops/cuda_matmul_plan.cpp build-gpu/kernels/libtessera_kernels.a -lcublas
//        -o kernels_bench  (one command line; run.sh has it)
// Prints one line per case: microseconds and the bytes the kernel must move, as GB/s; the matmul
// cases (matmul_bench.cu) also print their share of the same run's copy bandwidth / GEMM peak.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "tessera/kernels/attention_plan.h"
#include "tessera/kernels/model_ops.h"

void matmul_cases(std::mt19937& rng);  // matmul_bench.cu

namespace k = tessera::kernels;

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

template <typename T>
T* upload(const std::vector<T>& h) {
  T* d = nullptr;
  ok(cudaMalloc(&d, h.size() * sizeof(T)), "cudaMalloc");
  ok(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "H2D");
  return d;
}

std::vector<float> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void time_case(const char* name, double bytes, const std::function<cudaError_t()>& launch) {
  cudaEvent_t a, b;
  ok(cudaEventCreate(&a), "event");
  ok(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) ok(launch(), name);
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    ok(cudaEventRecord(a), "record");
    ok(launch(), name);
    ok(cudaEventRecord(b), "record");
    ok(cudaEventSynchronize(b), "sync");
    float t = 0;
    ok(cudaEventElapsedTime(&t, a, b), "elapsed");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double us = ms[ms.size() / 2] * 1e3;
  std::printf("%-48s %10.1f us %8.1f GB/s\n", name, us, bytes / (us * 1e-6) / 1e9);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

// The cache's element bytes and a random cache of that type (F16 / BF16 rounded from fp32 on
// the host: the kernels only read it).
size_t kv_bytes(k::KvType t) { return t == k::KvType::kF32 ? 4 : 2; }
const char* kv_name(k::KvType t) {
  return t == k::KvType::kF32 ? "f32" : t == k::KvType::kF16 ? "f16" : "bf16";
}
void* upload_cache(size_t n, k::KvType t, std::mt19937& rng) {
  const std::vector<float> f = randn(n, rng);
  if (t == k::KvType::kF32) return upload(f);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == k::KvType::kF16) {
      const __half x = __float2half_rn(f[i]);
      std::memcpy(&h[i], &x, 2);
    } else {
      uint32_t u = 0;
      std::memcpy(&u, &f[i], 4);
      h[i] = static_cast<uint16_t>(u >> 16);  // truncation: any bf16 value will do here
    }
  }
  return upload(h);
}

// Decode (q_len 1) or prefill (q_len == ctx) over `seqs` sequences of `ctx` tokens each: the
// flash attention the model runs (src/ops/backend_cuda.cpp: plan from the table's capacity, split
// over the context where that fills the SMs) and the simple paged kernel beside it.
void attention_case(int seqs, int ctx, int q_len, int heads, int kv_heads, int hd, int bs,
                    k::KvType kv, int sms, std::mt19937& rng) {
  const int blocks_per_seq = (ctx + bs - 1) / bs, num_blocks = seqs * blocks_per_seq;
  const int tokens = seqs * q_len;
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);  // scattered blocks, as after churn
  std::vector<int32_t> qstart(static_cast<size_t>(seqs) + 1), ctxs(static_cast<size_t>(seqs), ctx);
  for (int s = 0; s <= seqs; ++s) qstart[static_cast<size_t>(s)] = s * q_len;
  const size_t cache = static_cast<size_t>(num_blocks) * bs * kv_heads * hd;
  void* kc = upload_cache(cache, kv, rng);
  void* vc = upload_cache(cache, kv, rng);
  float* q = upload(randn(static_cast<size_t>(tokens) * heads * hd, rng));
  float* out = upload(std::vector<float>(static_cast<size_t>(tokens) * heads * hd));
  int32_t* dq = upload(qstart);
  int32_t* dc = upload(ctxs);
  int32_t* dt = upload(ids);
  const k::PagedAttentionArgs args{
      out,   q,        kc, vc, kv,    dq, dc, dt, seqs, tokens, blocks_per_seq,
      heads, kv_heads, hd, bs, 0.088f};
  // Bytes: every K/V row of every sequence once (what a memory-bound decode kernel must read).
  const double bytes = 2.0 * static_cast<double>(cache) * static_cast<double>(kv_bytes(kv));
  char name[160];
  const auto plan =
      k::attn::plan_attention(tokens, seqs, heads, kv_heads, hd, int64_t{blocks_per_seq} * bs, sms);
  if (plan.ok) {
    void* ws = nullptr;
    ok(cudaMalloc(&ws, k::attn::workspace_bytes(plan, tokens, seqs, heads, hd)), "cudaMalloc");
    std::snprintf(name, sizeof name, "flash_attention %s %s seqs=%d ctx=%d h=%d/%d hd=%d splits=%d",
                  q_len == 1 ? "decode" : "prefill", kv_name(kv), seqs, ctx, heads, kv_heads, hd,
                  plan.split.num_splits);
    time_case(name, bytes, [&] { return k::launch_flash_attention(args, plan, ws, nullptr); });
    cudaFree(ws);
  }
  std::snprintf(name, sizeof name, "paged_attention %s %s seqs=%d ctx=%d h=%d/%d hd=%d",
                q_len == 1 ? "decode" : "prefill", kv_name(kv), seqs, ctx, heads, kv_heads, hd);
  time_case(name, bytes, [&] { return k::launch_paged_attention(args, nullptr); });
  for (void* p : {kc, vc, static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(dq),
                  static_cast<void*>(dc), static_cast<void*>(dt)})
    cudaFree(p);
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const int sms = prop.multiProcessorCount;
  for (const k::KvType kv : {k::KvType::kF16, k::KvType::kF32}) {
    attention_case(1, 4096, 1, 32, 8, 128, 16, kv, sms, rng);
    attention_case(32, 2048, 1, 32, 8, 128, 16, kv, sms, rng);
    attention_case(64, 1024, 1, 32, 8, 128, 16, kv, sms, rng);
  }
  attention_case(1, 1024, 1024, 32, 8, 128, 16, k::KvType::kF16, sms, rng);

  {  // argmax over Llama-3 vocabulary rows
    const int rows = 64, cols = 128256;
    float* logits = upload(randn(static_cast<size_t>(rows) * cols, rng));
    int32_t* out = upload(std::vector<int32_t>(rows));
    time_case("argmax rows=64 vocab=128256", 4.0 * rows * cols,
              [&] { return k::launch_argmax(out, logits, rows, cols, nullptr); });
    cudaFree(logits);
    cudaFree(out);
  }
  {  // rope on a 2048-token prefill, 32 heads x 128
    const int tokens = 2048, heads = 32, hd = 128;
    float* x = upload(randn(static_cast<size_t>(tokens) * heads * hd, rng));
    std::vector<int32_t> pos(tokens);
    std::iota(pos.begin(), pos.end(), 0);
    int32_t* dpos = upload(pos);
    const std::vector<float> inv = randn(hd / 2, rng);  // host: the launch carries it by value
    time_case("rope neox tokens=2048 h=32 hd=128", 8.0 * tokens * heads * hd, [&] {
      return k::launch_rope(x, dpos, inv.data(), tokens, heads, hd, hd, true, nullptr);
    });
    cudaFree(x);
    cudaFree(dpos);
  }
  {  // kv_append of a 2048-token prefill into scattered slots, 8 kv heads x 128
    const int tokens = 2048, width = 8 * 128, slots_total = 4 * tokens;
    std::vector<int32_t> slots(slots_total);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(tokens);
    uint16_t* kc = upload(std::vector<uint16_t>(static_cast<size_t>(slots_total) * width));
    uint16_t* vc = upload(std::vector<uint16_t>(static_cast<size_t>(slots_total) * width));
    float* kk = upload(randn(static_cast<size_t>(tokens) * width, rng));
    float* vv = upload(randn(static_cast<size_t>(tokens) * width, rng));
    int32_t* ds = upload(slots);
    // Bytes: K and V read as fp32, written as F16.
    time_case("kv_append f16 tokens=2048 width=1024", 12.0 * tokens * width, [&] {
      return k::launch_kv_append(kc, vc, k::KvType::kF16, kk, vv, ds, tokens, width, nullptr);
    });
    for (void* p : {static_cast<void*>(kc), static_cast<void*>(vc), static_cast<void*>(kk),
                    static_cast<void*>(vv), static_cast<void*>(ds)})
      cudaFree(p);
  }
  matmul_cases(rng);
  ok(cudaDeviceSynchronize(), "final sync");
  return 0;
}
