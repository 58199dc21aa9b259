// ops::cpu element-wise and row ops: AVX2 when the CPU has it (simd.h), the reference loops
// otherwise; rows are split over the pool's threads (parallel.h) when there are enough of them to
// pay off.
#include <cpuid.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "../check.h"
#include "../kv_rows.h"
#include "parallel.h"
#include "simd.h"

namespace tessera::ops::cpu {

using ops::detail::check_cpu;
using ops::detail::check_embedding;
using ops::detail::check_f32;
using ops::detail::cols_of;
using ops::detail::host_span;
using ops::detail::require_host;
using ops::detail::rows_of;

namespace detail {
// F16C through CPUID (leaf 1, ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c".
bool have_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

bool have_avx2() {
  static const bool kHave =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && have_f16c();
  return kHave;
}
}  // namespace detail

// The AVX2 kernels are the widest built; an AVX-512 machine runs them too, so report what runs.
const char* simd_level() { return detail::have_avx2() ? "avx2" : "scalar"; }

namespace {
// Element count from which a row op is split across threads.
constexpr int64_t kParallelMinElems = 1 << 16;
}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  if (!detail::have_avx2() || n % dtype_info(type).block_elems != 0)
    return ref::dequantize_row(type, src, dst, n);  // ref reports bad sizes
  if (type == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  detail::dequantize_row_avx2(type, src, dst, n);
}

void embedding_shard(const Tensor& table, const Indices& idx, int64_t first_id, Tensor& out) {
  require_host("embedding_shard", {&table, &idx.tensor(), &out});
  const int64_t d = check_embedding("embedding_shard", table, idx, out);
  const auto ids = host_span("embedding_shard", "ids", idx);
  float* o = out.data_as<float>();
  for (size_t t = 0; t < ids.size(); ++t) {
    const int64_t row = ids[t] - first_id;
    float* dst = o + static_cast<int64_t>(t) * d;
    if (row >= 0 && row < table.dim(0))
      cpu::dequantize_row(table.dtype(), table.row_ptr(row), dst, d);
    else
      std::memset(dst, 0, static_cast<size_t>(d) * sizeof(float));
  }
}

// Every id must be a row: then it is the shard of the whole table (no row is zeroed).
void embedding(const Tensor& table, const Indices& idx, Tensor& out) {
  require_host("embedding", {&table, &idx.tensor(), &out});
  check_embedding("embedding", table, idx, out);
  ops::detail::check_id_values("embedding", host_span("embedding", "ids", idx), table.dim(0));
  cpu::embedding_shard(table, idx, 0, out);
}

void gather_rows(const Tensor& src, const Indices& idx, Tensor& out) {
  require_host("gather_rows", {&src, &idx.tensor(), &out});
  ops::detail::check_gather_rows("gather_rows", src, idx, out);
  const auto rows = host_span("gather_rows", "rows", idx);
  ops::detail::check_id_values("gather_rows", rows, rows_of(src));
  const int64_t d = cols_of(src);
  const size_t bytes = static_cast<size_t>(d) * sizeof(float);
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(out.data_as<float>() + static_cast<int64_t>(i) * d,
                src.data_as<float>() + rows[i] * d, bytes);
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  if (!detail::have_avx2()) return ref::rms_norm(x, weight, eps, out);
  require_host("rms_norm", {&x, &weight, &out});
  check_f32("rms_norm", "x", x);
  check_f32("rms_norm", "out", out);
  check_cpu("rms_norm", "weight", weight);
  const int64_t d = cols_of(x), rows = rows_of(x);
  if (weight.numel() != d || out.shape() != x.shape())
    fail(ErrorCode::kInvalidArgument, "rms_norm: x ", x.str(), " weight ", weight.str(), " out ",
         out.str());
  std::vector<float> wbuf;
  const float* w = weight.data_as<float>();
  if (weight.dtype() != DType::kF32) {
    wbuf.resize(static_cast<size_t>(d));
    cpu::dequantize_row(weight.dtype(), weight.data(), wbuf.data(), d);
    w = wbuf.data();
  }
  const float* xp = x.data_as<float>();
  float* op = out.data_as<float>();
  detail::parallel_for(
      rows, [&](int64_t r) { detail::rms_norm_row_avx2(xp + r * d, w, eps, d, op + r * d); },
      rows * d >= kParallelMinElems);
}

void add(Tensor& x, const Tensor& y) {
  if (!detail::have_avx2()) return ref::add(x, y);
  require_host("add", {&x, &y});
  check_f32("add", "x", x);
  check_f32("add", "y", y);
  if (x.numel() != y.numel()) fail(ErrorCode::kInvalidArgument, "add: ", x.str(), " += ", y.str());
  detail::add_avx2(x.data_as<float>(), y.data_as<float>(), x.numel());
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  if (!detail::have_avx2()) return ref::silu_mul(gate, up, out);
  require_host("silu_mul", {&gate, &up, &out});
  check_f32("silu_mul", "gate", gate);
  check_f32("silu_mul", "up", up);
  check_f32("silu_mul", "out", out);
  if (gate.numel() != up.numel() || out.numel() != gate.numel())
    fail(ErrorCode::kInvalidArgument, "silu_mul: ", gate.str(), " ", up.str(), " -> ", out.str());
  const int64_t n = gate.numel();
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  detail::parallel_for(
      chunks,
      [&](int64_t c) {
        const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
        detail::silu_mul_avx2(gate.data_as<float>() + i0, up.data_as<float>() + i0,
                              out.data_as<float>() + i0, len);
      },
      n >= kParallelMinElems);
}

void softmax(Tensor& x) {
  if (!detail::have_avx2()) return ref::softmax(x);
  require_host("softmax", {&x});
  check_f32("softmax", "x", x);
  const int64_t d = cols_of(x), rows = rows_of(x);
  float* p = x.data_as<float>();
  detail::parallel_for(
      rows, [&](int64_t r) { detail::softmax_row_avx2(p + r * d, d); },
      rows * d >= kParallelMinElems);
}

std::vector<int32_t> argmax(const Tensor& logits) {
  // Memory-bound single pass; the plain loop already vectorises well enough and keeps
  // "first maximum wins" trivially true.
  return ref::argmax(logits);
}

void kv_append(const Tensor& k, const Tensor& v, const Indices& idx, Tensor& k_cache,
               Tensor& v_cache) {
  require_host("kv_append", {&k, &v, &idx.tensor(), &k_cache, &v_cache});
  const int64_t width = ops::detail::check_kv_append("kv_append", k, v, idx, k_cache, v_cache);
  const auto slots = host_span("kv_append", "slots", idx);
  ops::detail::check_slot_values("kv_append", slots, k_cache);
  const DType type = k_cache.dtype();
  const size_t bytes = row_bytes(type, width);
  const auto store = detail::have_avx2() ? detail::kv_store_row_avx2 : ops::detail::kv_store_row;
  for (size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] < 0) continue;  // a padding row
    const auto row = static_cast<int64_t>(t);
    const auto at = static_cast<size_t>(slots[t]) * bytes;
    store(type, k.data_as<float>() + row * width, static_cast<char*>(k_cache.data()) + at, width);
    store(type, v.data_as<float>() + row * width, static_cast<char*>(v_cache.data()) + at, width);
  }
}

}  // namespace tessera::ops::cpu
