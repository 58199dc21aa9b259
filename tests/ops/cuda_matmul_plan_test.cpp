// The CUDA matmul's host-side decisions (src/ops/cuda_matmul_plan.h), which run on every machine:
// which path serves each (dtype, rows), when the GEMV may use 128-bit loads, the int8 activation
// scratch layout, and the GEMM's bounded dequantization tiles at model shapes.
#include "../../src/ops/cuda_matmul_plan.h"

#include <random>
#include <string>

#include "test_util.h"

namespace tessera::ops::test {
namespace {

using cuda_plan::MatmulPath;

bool int8_type(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 ||
         t == DType::kQ5_1;
}

TEST(CudaMatmulPlan, GemvUpToEightRowsThenTheGemmOfTheWeightType) {
  std::vector<DType> types(std::begin(kWeightTypes), std::end(kWeightTypes));
  types.insert(types.end(), std::begin(kKquantTypes), std::end(kKquantTypes));
  for (DType t : types) {
    SCOPED_TRACE(dtype_name(t));
    const MatmulPath gemv = int8_type(t) ? MatmulPath::kGemvInt8 : MatmulPath::kGemvF32;
    for (int64_t rows = 1; rows <= cuda_plan::kGemvMaxRows; ++rows)
      EXPECT_EQ(cuda_plan::choose_path(t, rows), gemv) << rows;
    const MatmulPath gemm = t == DType::kF32                        ? MatmulPath::kGemmF32
                            : t == DType::kF16 || t == DType::kBF16 ? MatmulPath::kGemmHalf
                                                                    : MatmulPath::kGemmDequant;
    for (int64_t rows : {9, 64, 4096}) {
      EXPECT_EQ(cuda_plan::choose_path(t, rows), gemm) << rows;
      EXPECT_EQ(cuda_plan::choose_path(t, rows, /*have_gemm=*/false), gemv) << rows;
    }
  }
  EXPECT_EQ(std::string(cuda_plan::path_name(MatmulPath::kGemmDequant)), "gemm_dequant");
}

TEST(CudaMatmulPlan, VectorLoadsNeedAlignedStartAndRows) {
  EXPECT_TRUE(cuda_plan::vector_loads(0x1000, 576));    // Q4_0, K = 1024
  EXPECT_TRUE(cuda_plan::vector_loads(0x1010, 1680));   // 8 Q6_K super-blocks
  EXPECT_FALSE(cuda_plan::vector_loads(0x1000, 54));    // Q4_0, K = 96
  EXPECT_FALSE(cuda_plan::vector_loads(0x1008, 576));   // a view 8 bytes into its buffer
  EXPECT_FALSE(cuda_plan::vector_loads(0x1001, 1088));  // an odd offset
}

TEST(CudaMatmulPlan, Q8ScratchHoldsQuantsThenAlignedScales) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const int64_t rows = std::uniform_int_distribution<int64_t>(1, 8)(rng);
    const int64_t k = 32 * std::uniform_int_distribution<int64_t>(1, 600)(rng);
    const auto s = cuda_plan::q8_scratch(rows, k);
    SCOPED_TRACE("rows " + std::to_string(rows) + " K " + std::to_string(k));
    EXPECT_GE(s.ds_offset, static_cast<size_t>(rows * k));  // one int8 per activation
    EXPECT_EQ(s.ds_offset % 256, 0u);
    EXPECT_GE(s.bytes, s.ds_offset + static_cast<size_t>(rows * (k / 32)) * 8);  // (d, sum)
    EXPECT_LT(s.bytes, s.ds_offset + static_cast<size_t>(rows * (k / 32)) * 8 + 256);
  }
  EXPECT_EQ(cuda_plan::q8_scratch(0, 4096).bytes, 0u);
}

TEST(CudaMatmulPlan, DequantTilesStayWithinTheirBoundAndCoverN) {
  const size_t limit = cuda_plan::kDequantTileBytes;
  struct Shape {
    int64_t n, k;
  };
  // Llama-3 1B / 8B projections and LM heads, a small model's, and a tiny one.
  for (const Shape sh :
       {Shape{2048, 2048}, Shape{8192, 2048}, Shape{2048, 8192}, Shape{128256, 2048},
        Shape{4096, 4096}, Shape{14336, 4096}, Shape{4096, 14336}, Shape{128256, 4096},
        Shape{49152, 576}, Shape{37, 96}}) {
    SCOPED_TRACE(std::to_string(sh.n) + "x" + std::to_string(sh.k));
    const auto s = cuda_plan::gemm_scratch(MatmulPath::kGemmDequant, 64, sh.n, sh.k);
    const auto tile = static_cast<size_t>(s.tile_columns) * static_cast<size_t>(sh.k) * 2;
    EXPECT_LE(tile, limit);
    EXPECT_GE(s.tile_columns, 1);
    EXPECT_LE(s.tile_columns, sh.n);
    if (s.tile_columns < sh.n) {
      EXPECT_EQ(s.tile_columns % 64, 0);                            // whole cuBLAS tiles
      EXPECT_GT(tile + 64 * static_cast<size_t>(sh.k) * 2, limit);  // and as many as fit
    }
    EXPECT_EQ(s.tile_offset, static_cast<size_t>(64 * sh.k * 2));  // after the fp16 activations
    EXPECT_GE(s.bytes, s.tile_offset + tile);
  }
  // 8B LM head: 128256 rows of 4096 take 1 GiB at once; tiles of 8192 rows take 64 MiB.
  EXPECT_EQ(cuda_plan::gemm_scratch(MatmulPath::kGemmDequant, 9, 128256, 4096).tile_columns, 8192);
  // A row larger than the bound still gets a tile of one row; a small bound rounds nothing up.
  EXPECT_EQ(cuda_plan::gemm_scratch(MatmulPath::kGemmDequant, 9, 10, 1000, 1500).tile_columns, 1);
  EXPECT_EQ(cuda_plan::gemm_scratch(MatmulPath::kGemmDequant, 9, 100, 1000, 6000).tile_columns, 3);
}

TEST(CudaMatmulPlan, OtherPathsNeedNoTile) {
  const auto half = cuda_plan::gemm_scratch(MatmulPath::kGemmHalf, 64, 4096, 4096);
  EXPECT_EQ(half.tile_columns, 0);
  EXPECT_EQ(half.bytes, size_t{64} * 4096 * 2);  // the activations in 16 bits only
  EXPECT_EQ(cuda_plan::gemm_scratch(MatmulPath::kGemmF32, 64, 4096, 4096).bytes, 0u);
}

}  // namespace
}  // namespace tessera::ops::test
