// Quantizers and dequantizers: hand-built blocks with known values, quantize->dequantize error
// bounds per format, and the fast CPU dequantizer against the reference.
#include <cstring>

#include "tessera/core/half.h"
#include "test_util.h"

namespace tessera::ops::test {
namespace {

class QuantTest : public SeededTest {};

std::vector<float> deq(DType t, const void* blk, int64_t n = 32) {
  std::vector<float> out(static_cast<size_t>(n));
  ref::dequantize_row(t, blk, out.data(), n);
  return out;
}

TEST_F(QuantTest, Q8_0KnownValues) {
  BlockQ8_0 b{};
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  auto e = deq(DType::kQ8_0, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(e[j], (j - 16) * 0.5f) << j;
}

TEST_F(QuantTest, Q4_0KnownValues) {
  BlockQ4_0 b{};
  b.d = 0x4000;  // 2.0
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto e = deq(DType::kQ4_0, &b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(e[j], (j - 8) * 2.0f) << j;       // low nibble -> element j
    EXPECT_EQ(e[j + 16], (7 - j) * 2.0f) << j;  // high nibble -> element j+16
  }
}

TEST_F(QuantTest, Q4_1KnownValues) {
  BlockQ4_1 b{};
  b.d = 0x3400;  // 0.25
  b.m = 0xBC00;  // -1.0
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto e = deq(DType::kQ4_1, &b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(e[j], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(e[j + 16], (15 - j) * 0.25f - 1.0f) << j;
  }
}

TEST_F(QuantTest, Q5_0KnownValues) {
  BlockQ5_0 b{};
  b.d = 0x3C00;                     // 1.0
  const uint32_t qh = 0xA5A50F0Fu;  // 5th bit of element e is bit e
  std::memcpy(b.qh, &qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto e = deq(DType::kQ5_0, &b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(e[j], static_cast<float>(static_cast<int>(j | (((qh >> j) & 1u) << 4)) - 16)) << j;
    EXPECT_EQ(e[j + 16],
              static_cast<float>(static_cast<int>((15 - j) | (((qh >> (j + 16)) & 1u) << 4)) - 16))
        << j;
  }
  // Spot values worked by hand: element 0 = nibble 0 | bit0 (1) << 4 = 16 -> 0;
  // element 16 = nibble 15 | bit16 (1) << 4 = 31 -> 15; element 4 = 4 | 0 -> -12.
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(e[16], 15.0f);
  EXPECT_EQ(e[4], -12.0f);
}

TEST_F(QuantTest, Q5_1KnownValues) {
  BlockQ5_1 b{};
  b.d = 0x3800;                     // 0.5
  b.m = 0x3C00;                     // 1.0
  const uint32_t qh = 0x80000001u;  // elements 0 and 31 get +16
  std::memcpy(b.qh, &qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (j << 4));
  auto e = deq(DType::kQ5_1, &b);
  EXPECT_EQ(e[0], 16 * 0.5f + 1.0f);
  EXPECT_EQ(e[1], 1 * 0.5f + 1.0f);
  EXPECT_EQ(e[16], 0 * 0.5f + 1.0f);
  EXPECT_EQ(e[31], 31 * 0.5f + 1.0f);
  EXPECT_EQ(e[15], 15 * 0.5f + 1.0f);
}

TEST_F(QuantTest, HalfAndBf16KnownValues) {
  const uint16_t h[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
  auto e = deq(DType::kF16, h, 4);
  EXPECT_EQ(e[0], 1.0f);
  EXPECT_EQ(e[1], -2.0f);
  EXPECT_EQ(e[2], 65504.0f);
  EXPECT_EQ(e[3], std::ldexp(1.0f, -24));
  const uint16_t b[2] = {0x3F80, 0xC040};
  auto f = deq(DType::kBF16, b, 2);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -3.0f);
}

// Per-block worst-case error of round-to-nearest quantization. d is the step; the extra terms
// cover the fp16 rounding of the stored d (and m): |d16 - d| <= d * 2^-11, times at most 31 steps.
float block_bound(DType t, const float* x) {
  float amax = 0, mn = x[0], mx = x[0];
  for (int j = 0; j < 32; ++j) {
    amax = std::max(amax, std::fabs(x[j]));
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float h = std::ldexp(1.0f, -11);
  switch (t) {
    case DType::kQ8_0:  // step amax/127, round to nearest
      return amax / 127.0f * (0.5f + 127 * h) + 1e-7f;
    case DType::kQ4_0:  // step amax/8; the far end (+8 steps) clamps to 7: one full step
      return amax / 8.0f * (1.0f + 8 * h) + 1e-7f;
    case DType::kQ5_0:
      return amax / 16.0f * (1.0f + 16 * h) + 1e-7f;
    case DType::kQ4_1:
      return (mx - mn) / 15.0f * (0.5f + 15 * h) + std::fabs(mn) * h + 1e-7f;
    case DType::kQ5_1:
      return (mx - mn) / 31.0f * (0.5f + 31 * h) + std::fabs(mn) * h + 1e-7f;
    default:
      return 0;
  }
}

TEST_F(QuantTest, RoundTripErrorBounds) {
  const int64_t n = 32 * 37;
  for (DType t : kWeightTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    std::vector<float> x = normal_vec(static_cast<size_t>(n));
    x[5] = 0.0f;  // an all-zero block must survive too
    std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
    std::vector<uint8_t> q(row_bytes(t, n));
    quantize_row(t, x.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    ref::dequantize_row(t, q.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      float bound;
      if (t == DType::kF32)
        bound = 0;
      else if (t == DType::kF16)
        bound =  // half an ulp, or half the subnormal step 2^-24 below 2^-14
            std::max(std::fabs(x[i]) * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25));
      else if (t == DType::kBF16)
        bound = std::fabs(x[i]) * std::ldexp(1.0f, -8);
      else
        bound = block_bound(t, x.data() + i / 32 * 32);
      ASSERT_LE(std::fabs(y[i] - x[i]), bound) << "element " << i << " x=" << x[i];
    }
    for (int i = 64; i < 96; ++i) EXPECT_EQ(y[i], 0.0f);
  }
}

TEST_F(QuantTest, Q8_0MatchesGgmlRounding) {
  // amax 127 gives d = 1 exactly, so the quants are round(x) (half away from zero, as roundf).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) - 15.5f;
  x[31] = 127.0f;
  BlockQ8_0 b;
  quantize_row(DType::kQ8_0, x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x3C00);
  EXPECT_EQ(b.qs[0], -16);  // roundf(-15.5)
  EXPECT_EQ(b.qs[15], -1);  // roundf(-0.5)
  EXPECT_EQ(b.qs[16], 1);   // roundf(0.5)
  EXPECT_EQ(b.qs[31], 127);
}

TEST_F(QuantTest, CpuDequantizeMatchesReference) {
  for (DType t : kWeightTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t n = is_quantized(t) ? 32 * 19 : 301;  // odd length for the plain types
    std::vector<float> x = normal_vec(static_cast<size_t>(n));
    std::vector<uint8_t> q(row_bytes(t, n));
    quantize_row(t, x.data(), q.data(), n);
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    ref::dequantize_row(t, q.data(), a.data(), n);
    cpu::dequantize_row(t, q.data(), b.data(), n);
    // Identical up to one fused multiply-add rounding (q*d+m in one step): 1 ulp of the value
    // plus 1 ulp of the offset m.
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(a[i], b[i], 2.5e-7f * (std::fabs(a[i]) + 4.0f)) << i;
  }
}

TEST_F(QuantTest, RejectsPartialBlocks) {
  std::vector<float> x(40);
  std::vector<uint8_t> q(64);
  EXPECT_THROW(quantize_row(DType::kQ4_1, x.data(), q.data(), 40), Error);
  EXPECT_THROW(ref::dequantize_row(DType::kQ8_0, q.data(), x.data(), 40), Error);
}

}  // namespace
}  // namespace tessera::ops::test
