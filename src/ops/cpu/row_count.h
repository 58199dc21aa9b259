// Private to the CPU kernels: the activation-row count of a kernel call (1..8; more reads as 8)
// turned from a run-time value into a compile-time one, so each kernel instance keeps its
// per-row accumulators in registers. One switch for every kernel family. No state.
#pragma once

#include <type_traits>

namespace tessera::ops::cpu::detail {

template <int M>
using RowCount = std::integral_constant<int, M>;

// f(RowCount<m>{}) for m in 1..8 (m > 8 as 8).
template <typename F>
inline void with_row_count(int m, F&& f) {
  switch (m) {
    case 1:
      return f(RowCount<1>{});
    case 2:
      return f(RowCount<2>{});
    case 3:
      return f(RowCount<3>{});
    case 4:
      return f(RowCount<4>{});
    case 5:
      return f(RowCount<5>{});
    case 6:
      return f(RowCount<6>{});
    case 7:
      return f(RowCount<7>{});
    default:
      return f(RowCount<8>{});
  }
}

}  // namespace tessera::ops::cpu::detail
