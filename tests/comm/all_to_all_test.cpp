// all_to_all_v on every CPU engine: the in-process group (threads), Gloo and the shared-memory
// communicator across real processes, for 2, 3 and 4 ranks over many rounds of uneven counts
// (zeros, silent ranks, self blocks); exchange_counts; argument errors; and failures: a rank
// that never joins or dies mid-run is named by the survivors within the timeout.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "all_to_all_cases.h"
#include "multiproc.h"
#include "tessera/comm/groups.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

using testing::describe;
using testing::draw_a2a_counts;
using testing::run_a2a_rounds;
using testing::run_ranks;

constexpr int kRounds = 40;
constexpr int kCols = 5;

std::unique_ptr<Communicator> cpu_comm(StoreClient& store, const std::string& name, int rank,
                                       int size, bool shm, double timeout = 10.0) {
  GroupParams p{.name = name,
                .rank = rank,
                .size = size,
                .timeout_seconds = timeout,
                .store = &store,
                .intra_node_shm = shm};
  return shm ? make_cpu_communicator(p) : make_gloo_communicator(p);
}

std::unique_ptr<StoreClient> store_at(int port) {
  return std::make_unique<StoreClient>(
      StoreClientParams{.host = "127.0.0.1", .port = port, .connect_timeout_seconds = 10.0});
}

class AllToAllSizes : public ::testing::TestWithParam<int> {
 protected:
  int n() const { return GetParam(); }
  uint32_t seed_ = std::random_device{}();
};

TEST_P(AllToAllSizes, LocalGroupUnevenRounds) {
  const auto counts = draw_a2a_counts(n(), kRounds, seed_);
  auto g = make_local_group(n(), "ep[stage 0]");
  std::vector<std::string> res(static_cast<size_t>(n()));
  std::vector<std::thread> ts;
  for (int r = 0; r < n(); ++r)
    ts.emplace_back([&, r] {
      try {
        res[static_cast<size_t>(r)] =
            run_a2a_rounds(*g[static_cast<size_t>(r)], counts, kCols, /*exchange=*/true);
      } catch (const Error& e) {
        res[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : ts) t.join();
  for (int r = 0; r < n(); ++r)
    EXPECT_EQ(res[static_cast<size_t>(r)], "") << "rank " << r << " seed " << seed_;
}

TEST_P(AllToAllSizes, GlooAndShmUnevenRoundsAcrossProcesses) {
  if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  const auto counts = draw_a2a_counts(n(), kRounds, seed_);
  for (bool shm : {false, true}) {
    StoreServer server{StoreServerParams{}};
    auto out = run_ranks(n(), [&](int r) -> std::string {
      auto store = store_at(server.port());
      auto c = cpu_comm(*store, "ep[stage 0]", r, n(), shm);
      std::string bad = run_a2a_rounds(*c, counts, kCols, /*exchange=*/false);
      if (bad.empty()) bad = run_a2a_rounds(*c, counts, 1, /*exchange=*/true);
      return bad.empty() ? c->engine() : "BAD " + bad;
    });
    for (int r = 0; r < n(); ++r) {
      const auto& o = out[static_cast<size_t>(r)];
      ASSERT_TRUE(o.ok) << "rank " << r << " shm " << shm << ": " << describe(o);
      // A group of one is plain Gloo whatever is asked.
      EXPECT_EQ(o.payload, shm && n() > 1 ? "shm" : "gloo") << "rank " << r << " seed " << seed_;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, AllToAllSizes, ::testing::Values(1, 2, 3, 4));

TEST(AllToAll, LocalGroupExchangeCountsAndMismatchedCounts) {
  auto g = make_local_group(2, "ep[stage 1]", 2.0);
  std::string e0, e1;
  std::thread t1([&] {
    try {
      auto got = exchange_counts(*g[1], {4, 1});
      if (got != std::vector<int64_t>{2, 1}) e1 = "exchange_counts wrong";
      Tensor in = Tensor::zeros({5, 2}, DType::kF32), out = Tensor::zeros({3, 2}, DType::kF32);
      g[1]->all_to_all_v(in, {4, 1}, out, {2, 1});
      Tensor out2 = Tensor::zeros({4, 2}, DType::kF32);
      g[1]->all_to_all_v(in, {4, 1}, out2, {3, 1});  // rank 0 sends 2, not 3
    } catch (const Error& e) {
      e1 = e.what();
    }
  });
  try {
    auto got = exchange_counts(*g[0], {0, 2});
    if (got != std::vector<int64_t>{0, 4}) e0 = "exchange_counts wrong";
    Tensor in = Tensor::zeros({2, 2}, DType::kF32), out = Tensor::zeros({4, 2}, DType::kF32);
    g[0]->all_to_all_v(in, {0, 2}, out, {0, 4});
    g[0]->all_to_all_v(in, {0, 2}, out, {0, 4});
  } catch (const Error& e) {
    e0 = e.what();
  }
  t1.join();
  EXPECT_EQ(e0, "");
  EXPECT_NE(e1.find("counts disagree: rank 0 sends 16 bytes, rank 1 expects 24"), std::string::npos)
      << e1;
}

TEST(AllToAll, BadArgumentsNameTheGroupAndRank) {
  auto g = make_local_group(1, "ep[stage 0]");
  Tensor in = Tensor::zeros({3, 2}, DType::kF32), out = Tensor::zeros({3, 2}, DType::kF32);
  auto expect_bad = [&](const Tensor& a, std::vector<int64_t> s, Tensor b, std::vector<int64_t> rc,
                        const char* what) {
    try {
      g[0]->all_to_all_v(a, s, b, rc);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      const std::string m = e.what();
      EXPECT_NE(m.find("group ep[stage 0]: all_to_all_v on rank 0"), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  };
  expect_bad(in, {3, 0}, out, {3}, "2 send counts for a group of 1");
  expect_bad(in, {2}, out, {3}, "send counts add up to 2 rows");
  expect_bad(in, {-1}, out, {3}, "is negative");
  expect_bad(in, {3}, Tensor::zeros({3, 3}, DType::kF32), {3}, "differ in dtype or row shape");
  expect_bad(in, {3}, Tensor::zeros({3, 2}, DType::kI32), {3}, "differ in dtype or row shape");
}

// A rank that never calls the op, and a rank killed mid-run: survivors fail within the timeout
// with kDeadlineExceeded / kUnavailable naming the group, the op and the rank.
TEST(AllToAll, GlooRankThatNeverJoinsOrDiesIsNamed) {
  if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  for (bool shm : {false, true}) {
    for (bool die : {false, true}) {
      StoreServer server{StoreServerParams{}};
      const auto t0 = std::chrono::steady_clock::now();
      auto out = run_ranks(3, [&](int r) -> std::string {
        auto store = store_at(server.port());
        auto c = cpu_comm(*store, "ep[stage 0]", r, 3, shm, /*timeout=*/1.0);
        Tensor in = Tensor::zeros({6, 4}, DType::kF32), out = Tensor::zeros({6, 4}, DType::kF32);
        for (int i = 0; i < 5; ++i) c->all_to_all_v(in, {2, 2, 2}, out, {2, 2, 2});
        if (r == 2) {
          if (die) ::raise(SIGKILL);
          store->get("release", 20.0);  // alive and connected, never joins
          return "idle";
        }
        try {
          c->all_to_all_v(in, {2, 2, 2}, out, {2, 2, 2});
        } catch (const Error&) {
          store->set_string("release", "1");
          throw;
        }
        return "returned";
      });
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_LT(secs, 15.0) << "shm " << shm << " die " << die;
      for (int r = 0; r < 2; ++r) {
        const auto& o = out[static_cast<size_t>(r)];
        ASSERT_TRUE(o.threw) << "rank " << r << " shm " << shm << " die " << die << ": "
                             << describe(o);
        EXPECT_TRUE(o.code == ErrorCode::kDeadlineExceeded || o.code == ErrorCode::kUnavailable)
            << describe(o);
        EXPECT_NE(o.error.find("group ep[stage 0]: all_to_all_v on rank " + std::to_string(r)),
                  std::string::npos)
            << o.error;
        if (!die) {
          EXPECT_EQ(o.code, ErrorCode::kDeadlineExceeded) << describe(o);
          EXPECT_NE(o.error.find("waiting for rank 2"), std::string::npos) << o.error;
        }
      }
      if (die) {
        bool named = false;
        for (int r = 0; r < 2; ++r)
          named = named || out[static_cast<size_t>(r)].error.find("rank 2") != std::string::npos;
        EXPECT_TRUE(named) << "no survivor named the killed rank: " << describe(out[0]) << " / "
                           << describe(out[1]);
      }
    }
  }
}

}  // namespace
}  // namespace tessera::comm
