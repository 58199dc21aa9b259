// The in-process engine: ranks are threads. The reference for what the real engines must do.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "tessera/comm/communicator.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Runs fn(rank) on one thread per communicator.
template <typename Fn>
void on_threads(std::vector<std::unique_ptr<Communicator>>& g, Fn&& fn) {
  std::vector<std::thread> ts;
  for (size_t r = 0; r < g.size(); ++r) ts.emplace_back([&, r] { fn(static_cast<int>(r)); });
  for (auto& t : ts) t.join();
}

TEST(LocalGroup, AllReduceIsTheRankOrderSumOnEveryRank) {
  for (int n : {1, 2, 3, 4}) {
    auto g = make_local_group(n, "tp");
    std::mt19937 rng(std::random_device{}());
    const size_t len = 1 + rng() % 1000;
    std::vector<std::vector<float>> in(static_cast<size_t>(n));
    for (auto& v : in) v = random_floats(rng, len);
    std::vector<float> expect(len, 0.0f);
    for (const auto& v : in)
      for (size_t i = 0; i < len; ++i) expect[i] += v[i];
    std::vector<Tensor> t(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r)
      t[static_cast<size_t>(r)] =
          Tensor::from_floats(in[static_cast<size_t>(r)], {static_cast<int64_t>(len)});
    on_threads(
        g, [&](int r) { g[static_cast<size_t>(r)]->all_reduce_sum(t[static_cast<size_t>(r)]); });
    for (int r = 0; r < n; ++r)
      EXPECT_EQ(std::memcmp(t[static_cast<size_t>(r)].data(), expect.data(), len * sizeof(float)),
                0)
          << "rank " << r << " of " << n;
  }
}

TEST(LocalGroup, AllGatherBroadcastSendRecv) {
  constexpr int n = 3;
  auto g = make_local_group(n, "world");
  std::mt19937 rng(std::random_device{}());
  std::vector<std::vector<float>> in(n);
  for (auto& v : in) v = random_floats(rng, 8);
  std::vector<Tensor> gathered(n), bcast(n), got(n);
  on_threads(g, [&](int r) {
    auto& c = *g[static_cast<size_t>(r)];
    Tensor mine = Tensor::from_floats(in[static_cast<size_t>(r)], {2, 4});
    gathered[static_cast<size_t>(r)] = Tensor::zeros({2 * n, 4}, DType::kF32);
    c.all_gather(mine, gathered[static_cast<size_t>(r)]);
    bcast[static_cast<size_t>(r)] = Tensor::from_floats(in[static_cast<size_t>(r)], {8});
    c.broadcast(bcast[static_cast<size_t>(r)], 1);
    got[static_cast<size_t>(r)] = Tensor::zeros({8}, DType::kF32);
    c.send(mine, (r + 1) % n);
    c.recv(got[static_cast<size_t>(r)], (r + n - 1) % n);
    c.barrier();
  });
  for (int r = 0; r < n; ++r) {
    for (int q = 0; q < n; ++q)
      EXPECT_EQ(std::memcmp(gathered[static_cast<size_t>(r)].data_as<float>() + q * 8,
                            in[static_cast<size_t>(q)].data(), 32),
                0);
    EXPECT_EQ(std::memcmp(bcast[static_cast<size_t>(r)].data(), in[1].data(), 32), 0);
    EXPECT_EQ(std::memcmp(got[static_cast<size_t>(r)].data(),
                          in[static_cast<size_t>((r + n - 1) % n)].data(), 32),
              0);
  }
}

TEST(LocalGroup, TimeoutNamesTheMissingRankAndAborts) {
  auto g = make_local_group(3, "tp[stage 0]", 0.3);
  std::vector<std::string> errors(3);
  std::vector<ErrorCode> codes(3, ErrorCode::kInternal);
  on_threads(g, [&](int r) {
    if (r == 2) return;  // never takes part
    Tensor t = Tensor::zeros({4}, DType::kF32);
    try {
      g[static_cast<size_t>(r)]->all_reduce_sum(t);
    } catch (const Error& e) {
      errors[static_cast<size_t>(r)] = e.what();
      codes[static_cast<size_t>(r)] = e.code();
    }
  });
  for (int r : {0, 1}) {
    EXPECT_EQ(codes[static_cast<size_t>(r)], ErrorCode::kDeadlineExceeded)
        << errors[static_cast<size_t>(r)];
    const std::string& m = errors[static_cast<size_t>(r)];
    EXPECT_NE(m.find("tp[stage 0]"), std::string::npos) << m;
    EXPECT_NE(m.find("all_reduce_sum"), std::string::npos) << m;
    EXPECT_NE(m.find("waiting for rank 2"), std::string::npos) << m;
  }
  // At least the rank that timed out is aborted; later calls fail fast.
  EXPECT_TRUE(g[0]->aborted() || g[1]->aborted());
  for (int r : {0, 1}) {
    if (!g[static_cast<size_t>(r)]->aborted()) continue;
    try {
      g[static_cast<size_t>(r)]->barrier();
      FAIL() << "barrier on an aborted communicator";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    }
  }
}

TEST(LocalGroup, RecvTimeoutNamesThePeer) {
  auto g = make_local_group(2, "pp[tp 0]", 0.2);
  Tensor t = Tensor::zeros({4}, DType::kF32);
  try {
    g[1]->recv(t, 0);
    FAIL() << "recv without a sender returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDeadlineExceeded);
    EXPECT_NE(std::string(e.what()).find("waiting for rank 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera::comm
