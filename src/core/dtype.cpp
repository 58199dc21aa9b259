#include "tessera/core/dtype.h"

#include "tessera/core/error.h"

namespace tessera {

const DTypeInfo& dtype_info(DType t) {
  static constexpr DTypeInfo kInfo[] = {
      {"f32", 1, 4, false},
      {"f16", 1, 2, false},
      {"bf16", 1, 2, false},
      {"i32", 1, 4, false},
      {"q8_0", 32, 34, true},
      {"q4_0", 32, 18, true},
      {"q4_1", 32, 20, true},
      {"q5_0", 32, 22, true},
      {"q5_1", 32, 24, true},
      {"q2_K", kQK_K, 84, true},
      {"q3_K", kQK_K, 110, true},
      {"q4_K", kQK_K, 144, true},
      {"q5_K", kQK_K, 176, true},
      {"q6_K", kQK_K, 210, true},
      // Packed layouts: the same bytes per row as the base type (blocks interleaved by 8 rows).
      {"q4_0x8", 32, 18, true},
      {"q4_1x8", 32, 20, true},
      {"q8_0x8", 32, 34, true},
      {"q5_0x8", 32, 22, true},
      {"q5_1x8", 32, 24, true},
      {"q4_Kx8", kQK_K, 148, true},
      {"q5_Kx8", kQK_K, 180, true},
      {"q6_Kx8", kQK_K, 210, true},
  };
  auto i = static_cast<size_t>(t);
  TESSERA_CHECK(i < std::size(kInfo), "bad dtype ", i);
  return kInfo[i];
}

DType packed_base(DType t) {
  switch (t) {
    case DType::kQ4_0x8:
      return DType::kQ4_0;
    case DType::kQ4_1x8:
      return DType::kQ4_1;
    case DType::kQ8_0x8:
      return DType::kQ8_0;
    case DType::kQ5_0x8:
      return DType::kQ5_0;
    case DType::kQ5_1x8:
      return DType::kQ5_1;
    case DType::kQ4_Kx8:
      return DType::kQ4_K;
    case DType::kQ5_Kx8:
      return DType::kQ5_K;
    case DType::kQ6_Kx8:
      return DType::kQ6_K;
    default:
      return t;
  }
}

size_t row_bytes(DType t, int64_t elems) {
  const auto& info = dtype_info(t);
  if (elems % info.block_elems != 0)
    fail(ErrorCode::kInvalidArgument, "row of ", elems, " elements is not a multiple of the ",
         info.name, " block size ", info.block_elems);
  return static_cast<size_t>(elems / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

}  // namespace tessera
