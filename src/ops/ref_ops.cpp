// The reference ops: plain scalar loops with fp32 accumulation, written to be obviously right.
// They are the specification the fast CPU and CUDA versions are tested against.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "kv_rows.h"

namespace tessera::ops::ref {

using detail::check_cpu;
using detail::check_embedding;
using detail::check_f32;
using detail::cols_of;
using detail::host_span;
using detail::require_host;
using detail::rows_of;

void embedding_shard(const Tensor& table, const Indices& idx, int64_t first_id, Tensor& out) {
  require_host("embedding_shard", {&table, &idx.tensor(), &out});
  const int64_t d = check_embedding("embedding_shard", table, idx, out);
  const auto ids = host_span("embedding_shard", "ids", idx);
  float* o = out.data_as<float>();
  for (size_t t = 0; t < ids.size(); ++t) {
    const int64_t row = ids[t] - first_id;
    float* dst = o + static_cast<int64_t>(t) * d;
    if (row >= 0 && row < table.dim(0))
      dequantize_row(table.dtype(), table.row_ptr(row), dst, d);
    else
      for (int64_t i = 0; i < d; ++i) dst[i] = 0.0f;
  }
}

// Every id must be a row: then it is the shard of the whole table (no row is zeroed).
void embedding(const Tensor& table, const Indices& idx, Tensor& out) {
  require_host("embedding", {&table, &idx.tensor(), &out});
  check_embedding("embedding", table, idx, out);
  detail::check_id_values("embedding", host_span("embedding", "ids", idx), table.dim(0));
  ref::embedding_shard(table, idx, 0, out);
}

void gather_rows(const Tensor& src, const Indices& idx, Tensor& out) {
  require_host("gather_rows", {&src, &idx.tensor(), &out});
  detail::check_gather_rows("gather_rows", src, idx, out);
  const auto rows = host_span("gather_rows", "rows", idx);
  detail::check_id_values("gather_rows", rows, rows_of(src));
  const int64_t d = cols_of(src);
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t c = 0; c < d; ++c)
      out.data_as<float>()[static_cast<int64_t>(i) * d + c] = src.data_as<float>()[rows[i] * d + c];
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  require_host("rms_norm", {&x, &weight, &out});
  check_f32("rms_norm", "x", x);
  check_f32("rms_norm", "out", out);
  check_cpu("rms_norm", "weight", weight);
  const int64_t d = cols_of(x), rows = rows_of(x);
  if (weight.numel() != d || out.shape() != x.shape())
    fail(ErrorCode::kInvalidArgument, "rms_norm: x ", x.str(), " weight ", weight.str(), " out ",
         out.str());
  std::vector<float> w(static_cast<size_t>(d));
  dequantize_row(weight.dtype(), weight.data(), w.data(), d);
  const float* xp = x.data_as<float>();
  float* op = out.data_as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float ss = 0.0f;
    for (int64_t i = 0; i < d; ++i) ss += xp[r * d + i] * xp[r * d + i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) op[r * d + i] = xp[r * d + i] * inv * w[i];
  }
}

void add(Tensor& x, const Tensor& y) {
  require_host("add", {&x, &y});
  check_f32("add", "x", x);
  check_f32("add", "y", y);
  if (x.numel() != y.numel()) fail(ErrorCode::kInvalidArgument, "add: ", x.str(), " += ", y.str());
  float* xp = x.data_as<float>();
  const float* yp = y.data_as<float>();
  for (int64_t i = 0; i < x.numel(); ++i) xp[i] += yp[i];
}

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  require_host("matmul", {&x, &w, &bias, &y});
  const auto s = detail::check_matmul("matmul", x, w, bias, y);
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  std::vector<float> row(static_cast<size_t>(s.k));
  for (int64_t n = 0; n < s.n; ++n) {
    dequantize_row(w.dtype(), w.row_ptr(n), row.data(), s.k);
    const float b = bias.defined() ? bias.data_as<float>()[n] : 0.0f;
    for (int64_t m = 0; m < s.m; ++m) {
      float acc = 0.0f;
      for (int64_t k = 0; k < s.k; ++k) acc += xp[m * s.k + k] * row[static_cast<size_t>(k)];
      yp[m * s.n + n] = acc + b;
    }
  }
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_host("silu_mul", {&gate, &up, &out});
  check_f32("silu_mul", "gate", gate);
  check_f32("silu_mul", "up", up);
  check_f32("silu_mul", "out", out);
  if (gate.numel() != up.numel() || out.numel() != gate.numel())
    fail(ErrorCode::kInvalidArgument, "silu_mul: ", gate.str(), " ", up.str(), " -> ", out.str());
  const float* g = gate.data_as<float>();
  const float* u = up.data_as<float>();
  float* o = out.data_as<float>();
  for (int64_t i = 0; i < gate.numel(); ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void softmax(Tensor& x) {
  require_host("softmax", {&x});
  check_f32("softmax", "x", x);
  const int64_t d = cols_of(x), rows = rows_of(x);
  float* p = x.data_as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float* row = p + r * d;
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < d; ++i) max = std::fmax(max, row[i]);
    float sum = 0.0f;
    for (int64_t i = 0; i < d; ++i) {
      row[i] = std::exp(row[i] - max);
      sum += row[i];
    }
    for (int64_t i = 0; i < d; ++i) row[i] /= sum;
  }
}

std::vector<int32_t> argmax(const Tensor& logits) {
  require_host("argmax", {&logits});
  check_f32("argmax", "logits", logits);
  const int64_t d = cols_of(logits), rows = rows_of(logits);
  std::vector<int32_t> out(static_cast<size_t>(rows), 0);
  const float* p = logits.data_as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    int64_t best = 0;
    for (int64_t i = 1; i < d; ++i)
      if (p[r * d + i] > p[r * d + best]) best = i;
    out[static_cast<size_t>(r)] = static_cast<int32_t>(best);
  }
  return out;
}

void kv_append(const Tensor& k, const Tensor& v, const Indices& idx, Tensor& k_cache,
               Tensor& v_cache) {
  require_host("kv_append", {&k, &v, &idx.tensor(), &k_cache, &v_cache});
  const int64_t width = detail::check_kv_append("kv_append", k, v, idx, k_cache, v_cache);
  const auto slots = host_span("kv_append", "slots", idx);
  detail::check_slot_values("kv_append", slots, k_cache);
  const DType t = k_cache.dtype();
  const size_t row_bytes = tessera::row_bytes(t, width);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0) continue;  // a padding row
    const auto row = static_cast<int64_t>(i);
    const auto at = static_cast<size_t>(slots[i]) * row_bytes;
    detail::kv_store_row(t, k.data_as<float>() + row * width,
                         static_cast<char*>(k_cache.data()) + at, width);
    detail::kv_store_row(t, v.data_as<float>() + row * width,
                         static_cast<char*>(v_cache.data()) + at, width);
  }
}

}  // namespace tessera::ops::ref
