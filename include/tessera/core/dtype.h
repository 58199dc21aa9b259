// Element types of tensors, including ggml's block-quantized weight formats (the legacy 32-element
// blocks and the K-quants' 256-element super-blocks). A quantized type packs `block_elems` elements
// into `block_bytes` bytes along the innermost dimension. Plain value types; no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tessera {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI32,
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  // CPU-only layouts made at load by ops::pack_weight (src/ops/cpu/packed.h), never in a file:
  // the base type's blocks of 8 consecutive rows interleaved so one SIMD register holds a 4-byte
  // slice of each of the 8 rows. Only matmul reads them; rows come in groups of 8. All but Q4_Kx8
  // and Q5_Kx8 keep their bytes per row; those two store their scales unpacked (4 bytes more).
  kQ4_0x8,
  kQ4_1x8,
  kQ8_0x8,
  kQ5_0x8,
  kQ5_1x8,
  kQ4_Kx8,  // 148 bytes per row per 256 elements: the 6-bit scales re-encoded as bytes
  kQ5_Kx8,  // 180 (Q5_K's 176), likewise
  kQ6_Kx8,
};

struct DTypeInfo {
  std::string_view name;
  int block_elems;  // elements per block (1 for plain types)
  int block_bytes;  // bytes per block
  bool quantized;
};

const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }
inline bool is_quantized(DType t) { return dtype_info(t).quantized; }
inline bool is_kquant(DType t) { return t >= DType::kQ2_K && t <= DType::kQ6_K; }
// The 8-row interleaved layouts (kQ4_0x8 ...) and their row-major base types.
inline bool is_packed(DType t) { return t >= DType::kQ4_0x8 && t <= DType::kQ6_Kx8; }
inline constexpr int kPackRows = 8;
DType packed_base(DType t);  // kQ4_1x8 -> kQ4_1; other types -> themselves

// Bytes needed for `elems` elements of a row; `elems` must be a multiple of the block size.
size_t row_bytes(DType t, int64_t elems);

// Block layouts (ggml-compatible, little-endian). fp16 fields are raw IEEE half bits.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);

// K-quants (ggml-common.h): 256 elements per super-block, split into sub-blocks of 16 (Q2_K, Q3_K,
// Q6_K) or 32 (Q4_K, Q5_K) that each get a small integer scale (and min) multiplied by the fp16
// super-block scale d (and dmin). Bit packing is documented at each dequantizer
// (ref_dequant_k.cpp).
inline constexpr int kQK_K = 256;
struct BlockQ2_K {
  uint8_t scales[16];  // sub-block j: scale in the low nibble, min in the high nibble
  uint8_t qs[64];      // 2-bit quants
  uint16_t d;
  uint16_t dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];   // high bit of each 3-bit quant
  uint8_t qs[64];      // low 2 bits
  uint8_t scales[12];  // sixteen 6-bit signed (offset 32) scales
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // eight 6-bit scales and eight 6-bit mins
  uint8_t qs[128];     // 4-bit quants
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // as Q4_K
  uint8_t qh[32];      // fifth bit of each quant
  uint8_t qs[128];     // low 4 bits
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // 8-bit signed sub-block scales
  uint16_t d;
};
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Byte offsets of a K-quant super-block's fp16 fields (d, then dmin where the type has one), for
// code that writes blocks of random bits and must make those fields finite (tests, benchmarks).
struct KquantHalfFields {
  size_t at[2];
  int count;
  constexpr const size_t* begin() const { return at; }
  constexpr const size_t* end() const { return at + count; }
};
constexpr KquantHalfFields kquant_half_fields(DType t) {
  switch (t) {
    case DType::kQ2_K:
      return {{offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}, 2};
    case DType::kQ3_K:
      return {{offsetof(BlockQ3_K, d), 0}, 1};
    case DType::kQ4_K:
      return {{offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}, 2};
    case DType::kQ5_K:
      return {{offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)}, 2};
    case DType::kQ6_K:
      return {{offsetof(BlockQ6_K, d), 0}, 1};
    default:
      return {{0, 0}, 0};
  }
}

}  // namespace tessera
