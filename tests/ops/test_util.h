// Helpers for the ops tests: a seeded RNG whose seed is printed on failure, random tensors and
// quantized weight tensors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/core/half.h"
#include "tessera/core/tensor.h"
#include "tessera/ops/ops.h"

namespace tessera::ops::test {

// Fresh entropy every run; SCOPED_TRACE puts the seed in every failure message so a failing run
// can be replayed by hard-coding it.
class SeededTest : public ::testing::Test {
 protected:
  SeededTest()
      : seed_(std::random_device{}()),
        rng_(seed_),
        trace_(__FILE__, __LINE__, "seed=" + std::to_string(seed_)) {}
  float uniform(float lo = -1.0f, float hi = 1.0f) {
    return std::uniform_real_distribution<float>(lo, hi)(rng_);
  }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng_); }
  int randint(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::vector<float> uniform_vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = uniform(lo, hi);
    return v;
  }
  std::vector<float> normal_vec(size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = normal();
    return v;
  }
  Tensor random_f32(Shape shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    auto v = normal_vec(static_cast<size_t>(n));
    return Tensor::from_floats(v, std::move(shape));
  }
  // A [rows, cols] weight of `type` quantized from uniform(-1, 1) values.
  Tensor random_weight(DType type, int64_t rows, int64_t cols) {
    Tensor w = Tensor::empty({rows, cols}, type);
    std::vector<float> src = uniform_vec(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (float& x : src) x = uniform();
      quantize_row(type, src.data(), const_cast<uint8_t*>(w.row_ptr(r)), cols);
    }
    return w;
  }
  // A [rows, cols] K-quant weight: random bits everywhere (every scale and quant pattern), then
  // finite fp16 super-block scales of either sign (|d|, |dmin| <= 0.01) written over them.
  Tensor random_kquant(DType type, int64_t rows, int64_t cols) {
    Tensor w = Tensor::empty({rows, cols}, type);
    auto* p = static_cast<uint8_t*>(w.data());
    for (size_t i = 0; i < w.nbytes(); ++i) p[i] = static_cast<uint8_t>(randint(0, 255));
    const auto bytes = static_cast<size_t>(dtype_info(type).block_bytes);
    for (size_t b = 0; b < w.nbytes() / bytes; ++b)
      for (size_t off : kquant_half_fields(type)) {
        const uint16_t h = f32_to_fp16(uniform(-0.01f, 0.01f));
        std::memcpy(p + b * bytes + off, &h, 2);
      }
    return w;
  }
  // random_weight for the types quantize_row makes, random_kquant for the K-quants.
  Tensor random_any_weight(DType type, int64_t rows, int64_t cols) {
    return is_kquant(type) ? random_kquant(type, rows, cols) : random_weight(type, rows, cols);
  }
  std::mt19937& rng() { return rng_; }

  uint32_t seed_;
  std::mt19937 rng_;
  ::testing::ScopedTrace trace_;
};

inline Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.data(), t.data(), t.nbytes());
  return c;
}

// Sets the process's CPU activation mode (cpu::set_activations) for a scope, restoring it after:
// the parity tests of the exact path run under kF32, those of the integer path under kInt8.
class ActivationsScope {
 public:
  explicit ActivationsScope(cpu::Activations a) : saved_(cpu::activations()) {
    cpu::set_activations(a);
  }
  ~ActivationsScope() { cpu::set_activations(saved_); }
  ActivationsScope(const ActivationsScope&) = delete;
  ActivationsScope& operator=(const ActivationsScope&) = delete;

 private:
  cpu::Activations saved_;
};

// How far int8 activations can move w . x (k % 32 == 0): each x_i is rounded to the nearest
// multiple of its block's scale d = max|x| / 127, by at most d / 2, so a block moves the dot by at
// most sum |w_i| d / 2.
inline double int8_rounding_bound(const float* x, const float* w, int64_t k) {
  double bound = 0;
  for (int64_t b = 0; b < k; b += 32) {
    double amax = 0, wabs = 0;
    for (int64_t i = b; i < b + 32; ++i) {
      amax = std::max(amax, static_cast<double>(std::fabs(x[i])));
      wabs += std::fabs(w[i]);
    }
    bound += wabs * amax / 127.0 / 2.0;
  }
  return bound;
}

// Where int8-activation matmul results y [m, n] (row i at y + i * n) leave the float64 reference
// w . x + bias (w the row-major weight dequantized, x the original fp32 activations): the first
// element off by more than int8_rounding_bound plus 1e-5 of sum |w_i x_i| (fp32 scaling and
// summing), as a message; empty when every element is within it.
inline std::string int8_result_error(const Tensor& w, const Tensor& x, const Tensor& bias,
                                     const float* y) {
  const int64_t m = x.shape()[0], n = w.shape()[0], k = w.shape()[1];
  std::vector<float> wrow(static_cast<size_t>(k));
  const float* xp = x.data_as<float>();
  for (int64_t j = 0; j < n; ++j) {
    ref::dequantize_row(w.dtype(), w.row_ptr(j), wrow.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      double want = bias.defined() ? bias.data_as<float>()[j] : 0.0, sum_abs = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = static_cast<double>(wrow[static_cast<size_t>(c)]) * xp[i * k + c];
        want += p;
        sum_abs += std::fabs(p);
      }
      const double tol = int8_rounding_bound(xp + i * k, wrow.data(), k) + 1e-5 * sum_abs + 1e-6;
      const double got = y[i * n + j];
      if (!(std::fabs(got - want) <= tol))
        return "y[" + std::to_string(i) + "," + std::to_string(j) + "] = " + std::to_string(got) +
               ", float64 " + std::to_string(want) + ", tolerance " + std::to_string(tol);
    }
  }
  return "";
}

inline constexpr DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                                         DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1};
inline constexpr DType kKquantTypes[] = {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                                         DType::kQ6_K};

}  // namespace tessera::ops::test
