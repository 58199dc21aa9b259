// The CUDA kernels' weight decoding, run on the CPU: kernels/decode.cuh is __host__ __device__, so
// the very functions the GEMV, the GEMM's dequantization and the embedding rows execute on a GPU
// run here against ops::ref on fresh random weights of every format. Per element bit for bit
// (the same formula and roundings); the int8 GEMV's block view (quants unpacked into dp4a words,
// the block's dot product and its scale/min epilogue) against the dequantized weights. Built with
// CUDA only (the header needs the toolkit's cuda_fp16.h); needs no GPU.
#include <cmath>
#include <iterator>
#include <vector>

#include "test_util.h"  // outside the #if: a build without CUDA still compiles a non-empty file

#if TESSERA_HAVE_CUDA
#include "../../kernels/decode.cuh"
#include "../../src/ops/cuda_common.h"

namespace tessera::ops::test {
namespace {

namespace kd = kernels::detail;

class CudaDecode : public SeededTest {
 protected:
  static kernels::WeightType wt(DType t) {
    kernels::WeightType w{};
    EXPECT_TRUE(cuda::weight_type(t, &w)) << dtype_name(t);
    return w;
  }
};

TEST_F(CudaDecode, EveryFormatMatchesTheReferenceBitForBit) {
  std::vector<DType> types(std::begin(kWeightTypes), std::end(kWeightTypes));
  types.insert(types.end(), std::begin(kKquantTypes), std::end(kKquantTypes));
  for (DType t : types) {
    SCOPED_TRACE(dtype_name(t));
    const kernels::WeightType w = wt(t);
    EXPECT_EQ(kd::block_elems(w), dtype_info(t).block_elems);
    EXPECT_EQ(kd::block_bytes(w), dtype_info(t).block_bytes);
    const int64_t k = is_quantized(t) ? 768 : 100;
    const Tensor m = random_any_weight(t, 4, k);
    std::vector<float> want(static_cast<size_t>(k));
    for (int64_t r = 0; r < 4; ++r) {
      ref::dequantize_row(t, m.row_ptr(r), want.data(), k);
      for (int64_t i = 0; i < k; ++i) {
        const float got = kd::weight_at(m.row_ptr(r), w, i);
        ASSERT_EQ(std::memcmp(&got, &want[static_cast<size_t>(i)], 4), 0)
            << "row " << r << " element " << i << ": " << got << " vs " << want[i];
      }
    }
  }
}

// unpack_block's words hold the quants in element order; with the block's d and min they give
// back exactly the reference's weights (offset 8 for Q4_0, 16 for Q5_0).
TEST_F(CudaDecode, Int8BlockViewGivesBackEveryWeight) {
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    SCOPED_TRACE(dtype_name(t));
    const kernels::WeightType w = wt(t);
    const Tensor m = random_weight(t, 1, 32 * 40);
    std::vector<float> want(32 * 40);
    ref::dequantize_row(t, m.row_ptr(0), want.data(), 32 * 40);
    const int offset = t == DType::kQ4_0 ? 8 : t == DType::kQ5_0 ? 16 : 0;
    for (int b = 0; b < 40; ++b) {
      const uint8_t* blk = m.row_ptr(0) + b * dtype_info(t).block_bytes;
      int q[8];
      float d = 0, mn = 0;
      switch (w) {
        case kernels::WeightType::kQ8_0:
          kd::unpack_block<kernels::WeightType::kQ8_0>(blk, q, &d, &mn);
          break;
        case kernels::WeightType::kQ4_0:
          kd::unpack_block<kernels::WeightType::kQ4_0>(blk, q, &d, &mn);
          break;
        case kernels::WeightType::kQ4_1:
          kd::unpack_block<kernels::WeightType::kQ4_1>(blk, q, &d, &mn);
          break;
        case kernels::WeightType::kQ5_0:
          kd::unpack_block<kernels::WeightType::kQ5_0>(blk, q, &d, &mn);
          break;
        default:
          kd::unpack_block<kernels::WeightType::kQ5_1>(blk, q, &d, &mn);
          break;
      }
      for (int j = 0; j < 32; ++j) {
        const int qj = static_cast<int8_t>(static_cast<uint32_t>(q[j / 4]) >> (8 * (j % 4)));
        const float v = kd::add_rn(kd::mul_rn(static_cast<float>(qj - offset), d), mn);
        ASSERT_EQ(v, want[static_cast<size_t>(b * 32 + j)]) << "block " << b << " element " << j;
      }
    }
  }
}

// The whole int8 dot of one row, as a GEMV lane sequence computes it (quantize the activations by
// q8_scale/q8_quant, unpack, dp4a, block_dot), against the double-precision dot of the reference
// weights with the same quantized activations: equal up to the fp32 roundings of the block
// epilogue and the sum (2 u per block term + K/32 u of the sum); and against the fp32 reference
// within the activation rounding bound (test_util.h).
TEST_F(CudaDecode, Int8RowDotMatchesTheDequantizedDot) {
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t k = 32 * 48;
    const Tensor m = random_weight(t, 1, k);
    std::vector<float> w(static_cast<size_t>(k)), x = normal_vec(static_cast<size_t>(k));
    ref::dequantize_row(t, m.row_ptr(0), w.data(), k);
    float acc = 0;
    double exact_q = 0, terms = 0, exact = 0, s = 0;
    for (int64_t b = 0; b < k / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j)
        amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 32 + j)]));
      const float dx = kd::q8_scale(amax);
      int xw[8] = {};
      int sumq = 0;
      for (int j = 0; j < 32; ++j) {
        const size_t e = static_cast<size_t>(b * 32 + j);
        const int qx = kd::q8_quant(x[e], dx);
        // rintf(x / dx) rounds once more in the division: |x / dx| <= 127 may be off by half an
        // ulp of 127 (2^-18) before rintf, so the quant is within dx (1/2 + 2^-18) of x.
        ASSERT_LE(std::abs(x[e] - static_cast<double>(qx) * dx),
                  dx * (0.5 + std::ldexp(1.0, -18)) * (1 + 1e-6));
        sumq += qx;
        xw[j / 4] |= static_cast<int>(static_cast<uint32_t>(qx & 0xff) << (8 * (j % 4)));
        exact_q += static_cast<double>(w[e]) * qx * dx;
        exact += static_cast<double>(w[e]) * x[e];
        s += std::fabs(static_cast<double>(w[e]) * x[e]);
      }
      const uint8_t* blk = m.row_ptr(0) + b * dtype_info(t).block_bytes;
      int q[8];
      float d = 0, mn = 0;
      float part = 0;
      int sumi = 0;
#define TESSERA_CASE(T)                                                  \
  case DType::T: {                                                       \
    kd::unpack_block<kernels::WeightType::T>(blk, q, &d, &mn);           \
    sumi = 0;                                                            \
    for (int i = 0; i < 8; ++i) sumi = kd::dp4a(q[i], xw[i], sumi);      \
    part = kd::block_dot<kernels::WeightType::T>(sumi, sumq, d, mn, dx); \
    break;                                                               \
  }
      switch (t) {
        TESSERA_CASE(kQ8_0)
        TESSERA_CASE(kQ4_0)
        TESSERA_CASE(kQ4_1)
        TESSERA_CASE(kQ5_0)
        TESSERA_CASE(kQ5_1)
        default:
          break;
      }
#undef TESSERA_CASE
      acc += part;
      // The epilogue's products, each rounded at most 3 times (sumi and sumq are exact ints).
      const int offset = t == DType::kQ4_0 ? 8 : t == DType::kQ5_0 ? 16 : 0;
      terms += std::fabs(static_cast<double>(d) * dx * (sumi - offset * sumq)) +
               std::fabs(static_cast<double>(mn) * dx * sumq);
    }
    const double u = std::ldexp(1.0, -24);
    // Block epilogue: <= 3 roundings per product term, then the in-order sum of K/32 partials.
    EXPECT_NEAR(acc, exact_q, u * (4 + k / 32.0) * terms + 1e-6);
    EXPECT_NEAR(acc, exact, int8_rounding_bound(x.data(), w.data(), k) + 1e-5 * s);
  }
}

}  // namespace
}  // namespace tessera::ops::test
#endif
