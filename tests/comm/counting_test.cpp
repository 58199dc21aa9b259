// CountingCommunicator over the in-process engine: results are the wrapped engine's, and the
// tallies follow the header's conventions (exact rows for all_to_all_v, ring figures otherwise).
#include "tessera/comm/counting.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

namespace tessera::comm {
namespace {

std::vector<std::unique_ptr<CountingCommunicator>> counted_group(int n) {
  std::vector<std::unique_ptr<CountingCommunicator>> g;
  for (auto& c : make_local_group(n, "ep"))
    g.push_back(std::make_unique<CountingCommunicator>(std::move(c)));
  return g;
}

template <typename Fn>
void on_threads(int n, Fn&& fn) {
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r) ts.emplace_back([&, r] { fn(r); });
  for (auto& t : ts) t.join();
}

TEST(CountingCommunicator, AllToAllCountsExactlyTheRowsLeavingTheRank) {
  std::mt19937 rng(std::random_device{}());
  for (int n : {1, 2, 3, 4}) {
    auto g = counted_group(n);
    const int64_t width = 1 + static_cast<int64_t>(rng() % 7);
    // send[r][d]: rows rank r sends rank d, some zero.
    std::vector<std::vector<int64_t>> send(static_cast<size_t>(n),
                                           std::vector<int64_t>(static_cast<size_t>(n)));
    for (auto& row : send)
      for (auto& v : row) v = static_cast<int64_t>(rng() % 4);
    std::vector<uint64_t> want(static_cast<size_t>(n), 0);
    on_threads(n, [&](int r) {
      const auto& s = send[static_cast<size_t>(r)];
      std::vector<int64_t> recv(static_cast<size_t>(n));
      int64_t in_rows = 0, out_rows = 0;
      for (int d = 0; d < n; ++d) {
        in_rows += s[static_cast<size_t>(d)];
        recv[static_cast<size_t>(d)] = send[static_cast<size_t>(d)][static_cast<size_t>(r)];
        out_rows += recv[static_cast<size_t>(d)];
        if (d != r)
          want[static_cast<size_t>(r)] +=
              static_cast<uint64_t>(s[static_cast<size_t>(d)] * width * 4);
      }
      Tensor in = Tensor::empty({in_rows, width}, DType::kF32);
      for (int64_t i = 0; i < in.numel(); ++i)
        in.data_as<float>()[i] = static_cast<float>(r * 1000 + i);
      Tensor out = Tensor::empty({out_rows, width}, DType::kF32);
      g[static_cast<size_t>(r)]->all_to_all_v(in, s, out, recv);
      // The data arrived as the plain engine delivers it: rank d's block for r first comes from d.
      int64_t row = 0;
      for (int d = 0; d < n; ++d) {
        int64_t off = 0;
        for (int k = 0; k < r; ++k) off += send[static_cast<size_t>(d)][static_cast<size_t>(k)];
        for (int64_t i = 0; i < recv[static_cast<size_t>(d)] * width; ++i)
          EXPECT_EQ(out.data_as<float>()[row * width + i],
                    static_cast<float>(d * 1000 + off * width + i));
        row += recv[static_cast<size_t>(d)];
      }
    });
    for (int r = 0; r < n; ++r) {
      const auto& t = g[static_cast<size_t>(r)]->tallies();
      ASSERT_TRUE(t.contains("all_to_all_v"));
      EXPECT_EQ(t.at("all_to_all_v").calls, 1u);
      EXPECT_EQ(t.at("all_to_all_v").bytes, want[static_cast<size_t>(r)])
          << "rank " << r << " of " << n;
    }
  }
}

TEST(CountingCommunicator, CollectivesCountAsARingSendsThem) {
  const int n = 3;
  auto g = counted_group(n);
  on_threads(n, [&](int r) {
    auto& c = *g[static_cast<size_t>(r)];
    Tensor t = Tensor::from_floats(std::vector<float>(10, 1.0f), {10});  // 40 bytes
    c.all_reduce_sum(t);
    EXPECT_EQ(t.data_as<float>()[9], 3.0f);
    Tensor out = Tensor::empty({30}, DType::kF32);
    c.all_gather(t, out);
    c.broadcast(t, 1);
    if (r == 0) c.send(t, 2);
    if (r == 2) c.recv(t, 0);
    c.all_reduce_sum_async(t)->wait();
  });
  for (int r = 0; r < n; ++r) {
    const auto& t = g[static_cast<size_t>(r)]->tallies();
    EXPECT_EQ(t.at("all_reduce_sum").calls, 2u);
    EXPECT_EQ(t.at("all_reduce_sum").bytes, 2u * 2u * 2u * 14u);  // 2 (n-1) ceil(40/3), twice
    EXPECT_EQ(t.at("all_gather").bytes, 2u * 40u);
    EXPECT_EQ(t.at("broadcast").bytes, r == 1 ? 80u : 0u);
    EXPECT_EQ(t.contains("send"), r == 0);
    if (r == 0) {
      EXPECT_EQ(t.at("send").bytes, 40u);
    }
    if (r == 2) {
      EXPECT_EQ(t.at("recv").bytes, 0u);
    }
    EXPECT_EQ(g[static_cast<size_t>(r)]->engine(), "local");
  }
}

}  // namespace
}  // namespace tessera::comm
