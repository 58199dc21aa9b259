// all_to_all_v test cases shared by the engines' tests: rounds of random uneven counts (zeros,
// ranks that send nothing, every rank sending to itself), with values that name their round,
// sender, receiver, row and column, so each rank checks what it received without seeing the
// other ranks' inputs. The counts are drawn once (in the parent, before forking) and shared.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "tessera/comm/communicator.h"

namespace tessera::comm::testing {

// counts[round][src][dst]: rows src sends dst in that round.
using A2ACounts = std::vector<std::vector<std::vector<int64_t>>>;

inline A2ACounts draw_a2a_counts(int n, int rounds, uint32_t seed) {
  std::mt19937 rng(seed);
  A2ACounts c(static_cast<size_t>(rounds));
  for (int k = 0; k < rounds; ++k) {
    auto& m = c[static_cast<size_t>(k)];
    m.assign(static_cast<size_t>(n), std::vector<int64_t>(static_cast<size_t>(n), 0));
    const int silent = static_cast<int>(rng() % static_cast<uint32_t>(n + 2));  // may be none
    for (int s = 0; s < n; ++s)
      for (int d = 0; d < n; ++d) {
        if (s == silent && k % 3 == 1) continue;  // this rank sends nothing at all this round
        const uint32_t roll = rng() % 10;
        const auto i = static_cast<size_t>(s), j = static_cast<size_t>(d);
        m[i][j] = roll < 3 ? 0 : static_cast<int64_t>(rng() % (roll == 9 ? 90u : 7u));
      }
  }
  return c;
}

// Exactly representable in F32 for rounds < 60, ranks < 8, rows < 100, cols < 8.
inline float a2a_value(int round, int src, int dst, int64_t row, int col) {
  return static_cast<float>(((round * 8 + src) * 8 + dst) * 1000 + row * 8 + col);
}

// One rank's rounds: sends, receives and checks. `exchange` takes the recv counts from
// exchange_counts instead of the shared table. Returns "" or the first problem found.
inline std::string run_a2a_rounds(Communicator& c, const A2ACounts& counts, int cols,
                                  bool exchange) {
  const int n = c.size(), me = c.rank();
  for (int k = 0; k < static_cast<int>(counts.size()); ++k) {
    const auto& m = counts[static_cast<size_t>(k)];
    std::vector<int64_t> send = m[static_cast<size_t>(me)], recv(static_cast<size_t>(n));
    int64_t ns = 0, nr = 0;
    for (int r = 0; r < n; ++r) {
      recv[static_cast<size_t>(r)] = m[static_cast<size_t>(r)][static_cast<size_t>(me)];
      ns += send[static_cast<size_t>(r)];
      nr += recv[static_cast<size_t>(r)];
    }
    if (exchange) {
      auto got = exchange_counts(c, send);
      if (got != recv) return "round " + std::to_string(k) + ": exchange_counts disagrees";
    }
    Tensor in = Tensor::empty({ns, cols}, DType::kF32);
    Tensor out = Tensor::empty({nr, cols}, DType::kF32);
    float* p = in.data_as<float>();
    for (int d = 0; d < n; ++d)
      for (int64_t row = 0; row < send[static_cast<size_t>(d)]; ++row)
        for (int col = 0; col < cols; ++col) *p++ = a2a_value(k, me, d, row, col);
    for (int64_t i = 0; i < nr * cols; ++i) out.data_as<float>()[i] = -1.0f;
    c.all_to_all_v(in, send, out, recv);
    const float* q = out.data_as<float>();
    for (int s = 0; s < n; ++s)
      for (int64_t row = 0; row < recv[static_cast<size_t>(s)]; ++row)
        for (int col = 0; col < cols; ++col, ++q)
          if (*q != a2a_value(k, s, me, row, col))
            return "round " + std::to_string(k) + ": from rank " + std::to_string(s) + " row " +
                   std::to_string(row) + " col " + std::to_string(col) + ": got " +
                   std::to_string(*q) + ", want " + std::to_string(a2a_value(k, s, me, row, col));
  }
  return "";
}

}  // namespace tessera::comm::testing
