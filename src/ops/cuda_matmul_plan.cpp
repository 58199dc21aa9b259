// The CUDA matmul's host-side decisions (cuda_matmul_plan.h). Compiled into every build, CUDA or
// not, so that tests/ops/cuda_matmul_plan_test.cpp runs everywhere.
#include "cuda_matmul_plan.h"

#include <algorithm>

namespace tessera::ops::cuda_plan {
namespace {

constexpr size_t kAlign = 256;
size_t round_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool int8_block_type(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 ||
         t == DType::kQ5_1;
}

}  // namespace

const char* path_name(MatmulPath p) {
  switch (p) {
    case MatmulPath::kGemvInt8:
      return "gemv_int8";
    case MatmulPath::kGemvF32:
      return "gemv_f32";
    case MatmulPath::kGemmF32:
      return "gemm_f32";
    case MatmulPath::kGemmHalf:
      return "gemm_half";
    case MatmulPath::kGemmDequant:
      return "gemm_dequant";
  }
  return "?";
}

MatmulPath choose_path(DType type, int64_t rows, bool have_gemm) {
  if (rows <= kGemvMaxRows || !have_gemm)
    return int8_block_type(type) ? MatmulPath::kGemvInt8 : MatmulPath::kGemvF32;
  if (type == DType::kF32) return MatmulPath::kGemmF32;
  if (type == DType::kF16 || type == DType::kBF16) return MatmulPath::kGemmHalf;
  return MatmulPath::kGemmDequant;
}

bool build_has_gemm() {
#if TESSERA_HAVE_CUBLAS
  return true;
#else
  return false;
#endif
}

bool vector_loads(uintptr_t w_address, size_t row_bytes) {
  return w_address % 16 == 0 && row_bytes % 16 == 0;
}

Q8Scratch q8_scratch(int64_t rows, int64_t k) {
  const auto r = static_cast<size_t>(std::max<int64_t>(rows, 0));
  const auto kk = static_cast<size_t>(std::max<int64_t>(k, 0));
  Q8Scratch s;
  s.ds_offset = round_up(r * kk);
  s.bytes = s.ds_offset + round_up(r * (kk / 32) * 2 * sizeof(float));
  return s;
}

GemmScratch gemm_scratch(MatmulPath path, int64_t rows, int64_t n, int64_t k, size_t tile_limit) {
  GemmScratch s;
  const auto kk = static_cast<size_t>(std::max<int64_t>(k, 0));
  if (path == MatmulPath::kGemmHalf || path == MatmulPath::kGemmDequant)
    s.bytes = round_up(static_cast<size_t>(std::max<int64_t>(rows, 0)) * kk * 2);
  if (path != MatmulPath::kGemmDequant || n <= 0) return s;
  const size_t row = std::max<size_t>(kk * 2, 1);
  auto cols = static_cast<int64_t>(std::min<size_t>(tile_limit / row, static_cast<size_t>(n)));
  if (cols > 64 && cols < n) cols = cols / 64 * 64;
  s.tile_columns = std::max<int64_t>(cols, 1);
  s.tile_offset = s.bytes;
  s.bytes += round_up(static_cast<size_t>(s.tile_columns) * row);
  return s;
}

}  // namespace tessera::ops::cuda_plan
