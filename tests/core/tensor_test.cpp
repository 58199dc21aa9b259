#include "tessera/core/tensor.h"

#include <gtest/gtest.h>

#include <random>

#include "tessera/core/error.h"
#include "tessera/core/half.h"

namespace tessera {
namespace {

TEST(Tensor, EmptyIsZeroedAndShaped) {
  Tensor t = Tensor::empty({2, 3}, DType::kF32);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  for (float v : t.f32()) EXPECT_EQ(v, 0.0f);
}

TEST(Tensor, QuantizedRowBytes) {
  Tensor t = Tensor::empty({4, 64}, DType::kQ4_1);
  EXPECT_EQ(t.row_bytes(), 40u);
  EXPECT_EQ(t.nbytes(), 160u);
  EXPECT_THROW(Tensor::empty({4, 33}, DType::kQ8_0), Error);
}

TEST(Tensor, SliceAndViewShareStorage) {
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from_floats(v, {4, 3});
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.f32()[0], 3.0f);
  s.f32()[0] = 100.0f;
  EXPECT_EQ(t.f32()[3], 100.0f);
  Tensor w = t.view({2, 6});
  EXPECT_EQ(w.dim(-1), 6);
  EXPECT_THROW(t.view({5, 3}), Error);
}

TEST(Tensor, BorrowedStorageBoundsChecked) {
  std::vector<uint8_t> bytes(100);
  auto st = Storage::borrow(bytes.data(), bytes.size(), nullptr);
  EXPECT_NO_THROW(Tensor::from_storage(st, 0, {5, 5}, DType::kF32));
  EXPECT_THROW(Tensor::from_storage(st, 8, {5, 5}, DType::kF32), Error);
}

// Row slices and views keep a tensor contiguous; a column range is contiguous only at the full
// width (its row stride stays the parent's width, even for a single row).
TEST(Tensor, ContiguityOfSlicesViewsAndColumns) {
  Tensor t = Tensor::empty({4, 3, 2}, DType::kF32);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.slice(1, 3).is_contiguous());
  EXPECT_TRUE(t.view({12, 2}).is_contiguous());
  Tensor m = Tensor::empty({4, 6}, DType::kF32);
  EXPECT_TRUE(m.cols(0, 6).is_contiguous());
  EXPECT_FALSE(m.cols(0, 3).is_contiguous());
  EXPECT_FALSE(m.cols(2, 5).is_contiguous());
  EXPECT_FALSE(m.slice(0, 1).cols(1, 4).is_contiguous());
  EXPECT_TRUE(Tensor::empty({}, DType::kF32).is_contiguous());
}

TEST(Half, RoundTripsAndRounds) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-70000.f, 70000.f);
  for (int i = 0; i < 10000; ++i) {
    float f = u(rng);
    uint16_t h = f32_to_fp16(f);
    EXPECT_EQ(f32_to_fp16(fp16_to_f32(h)), h);
    if (std::abs(f) < 65504.f) {
      EXPECT_NEAR(fp16_to_f32(h), f, std::abs(f) * 1e-3f + 1e-7f);
    }
  }
  // Every half bit pattern round-trips through float (NaNs stay NaN).
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = fp16_to_f32(static_cast<uint16_t>(b));
    if (f != f) continue;
    EXPECT_EQ(f32_to_fp16(f), b) << b;
  }
  EXPECT_EQ(fp16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), 5.9604644775390625e-08f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // ties to even
}

}  // namespace
}  // namespace tessera
