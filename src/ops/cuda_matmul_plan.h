// Private to the ops: the host-side decisions of the CUDA matmul (cuda_matmul.cpp), kept free of
// CUDA so the CPU tests check them on machines without a GPU: which path serves a call (decode
// GEMV or cuBLAS GEMM), whether the GEMV may use 128-bit weight loads, how the int8 activation
// scratch is laid out, and how many weight rows one dequantized GEMM tile holds. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tessera/core/dtype.h"

namespace tessera::ops::cuda_plan {

// Rows of x up to which the decode GEMV serves a matmul (equal to kernels::kGemvMaxRows; the
// CUDA file static_asserts it). The GEMV streams every weight byte once and does 2*M flops per
// weight on CUDA cores, so it is bound by memory while M is small; at M = 8 each lane already
// holds 8 accumulators and re-reads 8 activation rows per weight element, and from there the
// tensor cores (cuBLAS, 2*M flops per weight at hundreds of TFLOP/s) win even counting the
// dequantization pass the quantized types need. A model's decode batch of a few sequences stays
// on the GEMV. (Chosen from arithmetic intensity, not yet measured: benchmarks/gpu measures it.)
inline constexpr int64_t kGemvMaxRows = 8;
// Bound on the fp16 scratch the GEMM path dequantizes weight rows into (plus the activations
// cast to 16 bits): an 8B model's largest matrix (128256 x 4096) would take 1 GiB at once.
inline constexpr size_t kDequantTileBytes = size_t{64} << 20;

enum class MatmulPath : uint8_t {
  kGemvInt8,     // 32-element block formats: int8 activations, __dp4a
  kGemvF32,      // F32/F16/BF16 and K-quants: fp32 activations
  kGemmF32,      // cuBLAS SGEMM on the F32 weights (no TF32: parity with the fp32 reference)
  kGemmHalf,     // cuBLAS GemmEx on the F16/BF16 weights, activations cast to the same type
  kGemmDequant,  // quantized weights dequantized to fp16 tiles, then GemmEx
};
const char* path_name(MatmulPath p);

// The path for `rows` rows of x times a weight of `type`; have_gemm false (no cuBLAS in the
// build) keeps every call on the GEMV, in passes of kGemvMaxRows rows.
MatmulPath choose_path(DType type, int64_t rows, bool have_gemm = true);

// Whether this build links cuBLAS (TESSERA_HAVE_CUBLAS): the GEMM paths exist only then.
bool build_has_gemm();

// 128-bit loads of weight rows: the row start and every row must be 16-byte aligned.
bool vector_loads(uintptr_t w_address, size_t row_bytes);

// Int8 activations for `rows` rows of K (K % 32 == 0): qs [rows, K] int8 at offset 0, then the
// (d, sum) float pairs [rows, K / 32] at ds_offset (256-aligned, as every piece of the scratch).
struct Q8Scratch {
  size_t ds_offset = 0;
  size_t bytes = 0;
};
Q8Scratch q8_scratch(int64_t rows, int64_t k);

// The GEMM's scratch: the activations cast to 16 bits, then (kGemmDequant) a tile of
// tile_columns weight rows of K fp16 values.
struct GemmScratch {
  int64_t tile_columns = 0;  // weight rows per dequantized tile (0 when no tile is needed)
  size_t tile_offset = 0;
  size_t bytes = 0;
};
// tile_columns: all n rows when they fit in `tile_limit` bytes; otherwise as many as fit, rounded
// down to a multiple of 64 when more than 64 fit (whole cuBLAS tiles), at least 1.
GemmScratch gemm_scratch(MatmulPath path, int64_t rows, int64_t n, int64_t k,
                         size_t tile_limit = kDequantTileBytes);

}  // namespace tessera::ops::cuda_plan
