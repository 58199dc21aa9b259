// The non-blocking collectives (communicator.h: *_async, reduce_scatter_sum) on the local, gloo and
// shm engines: several ops outstanding at once and waited for out of order, mixed with blocking
// calls, give bitwise the rank-order results of the blocking calls; reduce_scatter_sum is bitwise
// its block of all_reduce_sum; and a rank that never joins is named by wait(), with the group and
// the op, within the timeout.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "multiproc.h"
#include "tessera/comm/groups.h"

namespace tessera::comm {
namespace {

using testing::describe;
using testing::run_ranks;
using Clock = std::chrono::steady_clock;

// Inputs with the values a sum must keep bitwise: -0.0, tiny and huge magnitudes.
std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> d(0.0f, 10.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = rng() % 16;
    v[i] = k == 0 ? -0.0f : k == 1 ? d(rng) * 1e-30f : k == 2 ? d(rng) * 1e30f : d(rng);
  }
  return v;
}

// One rank's inputs for the sequence below, and what every op must give.
struct Case {
  static constexpr int kReduces = 4;
  int n = 0;
  std::vector<size_t> lens;  // per async all-reduce; several slots for the last
  std::vector<std::vector<std::vector<float>>> in;  // [op][rank]
  std::vector<std::vector<float>> gather_in;        // [rank], 3 rows x 5
  std::vector<std::vector<float>> scatter_in;       // [rank], n blocks of 2 x 7
  std::vector<std::vector<float>> blocking_in;      // [rank]

  Case(int ranks, std::mt19937& rng) : n(ranks) {
    lens = {1, 576, 1 + rng() % 3000, 200001};
    for (size_t len : lens) {
      in.emplace_back();
      for (int r = 0; r < n; ++r) in.back().push_back(random_floats(rng, len));
    }
    for (int r = 0; r < n; ++r) {
      gather_in.push_back(random_floats(rng, 15));
      scatter_in.push_back(random_floats(rng, static_cast<size_t>(n) * 14));
      blocking_in.push_back(random_floats(rng, 333));
    }
  }
  static std::vector<float> sum(const std::vector<std::vector<float>>& v) {
    std::vector<float> s(v[0].size(), 0.0f);
    for (const auto& x : v)
      for (size_t i = 0; i < x.size(); ++i) s[i] += x[i];
    return s;
  }
};

Tensor tensor_of(const std::vector<float>& v, Shape shape) { return Tensor::from_floats(v, shape); }
bool same_bits(const Tensor& t, const std::vector<float>& v) {
  return t.nbytes() == v.size() * sizeof(float) && std::memcmp(t.data(), v.data(), t.nbytes()) == 0;
}

// The sequence every rank runs: four async all-reduces, an async all-gather and an async
// reduce-scatter outstanding together, a blocking all-reduce issued while they are, then the
// waits in reverse order; then a blocking reduce_scatter_sum. Returns "" or what went wrong.
std::string run_sequence(Communicator& c, const Case& k) {
  const int r = c.rank();
  const auto ur = static_cast<size_t>(r);
  std::vector<Tensor> t;
  std::vector<std::unique_ptr<Work>> w;
  for (size_t op = 0; op < k.in.size(); ++op) {
    t.push_back(tensor_of(k.in[op][ur], {static_cast<int64_t>(k.lens[op])}));
    w.push_back(c.all_reduce_sum_async(t.back()));
  }
  Tensor g_in = tensor_of(k.gather_in[ur], {3, 5});
  Tensor g_out = Tensor::empty({3 * k.n, 5}, DType::kF32);
  w.push_back(c.all_gather_async(g_in, g_out));
  Tensor s_in = tensor_of(k.scatter_in[ur], {2 * k.n, 7});
  Tensor s_out = Tensor::empty({2, 7}, DType::kF32);
  w.push_back(c.reduce_scatter_sum_async(s_in, s_out));
  Tensor b = tensor_of(k.blocking_in[ur], {333});
  c.all_reduce_sum(b);  // runs after the async ops above, on every rank
  for (auto it = w.rbegin(); it != w.rend(); ++it) (*it)->wait();
  w.clear();

  std::string err;
  for (size_t op = 0; op < k.in.size(); ++op)
    if (!same_bits(t[op], Case::sum(k.in[op])))
      err += "all_reduce_sum_async " + std::to_string(op) + "; ";
  if (!same_bits(b, Case::sum(k.blocking_in))) err += "blocking all_reduce_sum; ";
  std::vector<float> gathered;
  for (const auto& v : k.gather_in) gathered.insert(gathered.end(), v.begin(), v.end());
  if (!same_bits(g_out, gathered)) err += "all_gather_async; ";
  const auto full = Case::sum(k.scatter_in);
  const std::vector<float> block(full.begin() + r * 14, full.begin() + (r + 1) * 14);
  if (!same_bits(s_out, block)) err += "reduce_scatter_sum_async; ";
  Tensor s2 = Tensor::empty({2, 7}, DType::kF32);
  c.reduce_scatter_sum(s_in, s2);
  if (!same_bits(s2, block)) err += "reduce_scatter_sum; ";
  // A bad shape is an error of the call itself (blocking) or of its wait() (async).
  try {
    Tensor bad = Tensor::empty({3, 7}, DType::kF32);
    c.reduce_scatter_sum(s_in, bad);
    err += "a bad reduce_scatter_sum shape was accepted; ";
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidArgument) err += std::string("bad shape: ") + e.what();
  }
  return err;
}

TEST(AsyncLocal, OutstandingOpsGiveTheBlockingResults) {
  std::mt19937 rng(std::random_device{}());
  for (int n : {1, 2, 3}) {
    const Case k(n, rng);
    auto g = make_local_group(n, "tp");
    std::vector<std::string> errs(static_cast<size_t>(n));
    std::vector<std::thread> ts;
    for (int r = 0; r < n; ++r)
      ts.emplace_back([&, r] {
        try {
          errs[static_cast<size_t>(r)] = run_sequence(*g[static_cast<size_t>(r)], k);
        } catch (const std::exception& e) {
          errs[static_cast<size_t>(r)] = e.what();
        }
      });
    for (auto& t : ts) t.join();
    for (int r = 0; r < n; ++r)
      EXPECT_EQ(errs[static_cast<size_t>(r)], "") << "rank " << r << " of " << n;
  }
}

TEST(AsyncLocal, WaitNamesTheRankThatNeverJoins) {
  auto g = make_local_group(3, "tp[stage 0]", /*timeout_seconds=*/0.5);
  std::vector<std::string> msgs(2);
  std::vector<std::thread> ts;
  for (int r = 0; r < 2; ++r)
    ts.emplace_back([&, r] {
      Tensor a = Tensor::zeros({8}, DType::kF32), b = Tensor::zeros({8}, DType::kF32);
      auto w1 = g[static_cast<size_t>(r)]->all_reduce_sum_async(a);
      auto w2 = g[static_cast<size_t>(r)]->all_reduce_sum_async(b);
      try {
        w1->wait();
        msgs[static_cast<size_t>(r)] = "returned";
      } catch (const Error& e) {
        msgs[static_cast<size_t>(r)] = std::to_string(static_cast<int>(e.code())) + " " + e.what();
      }
      try {
        w2->wait();
      } catch (const Error&) {  // the group is aborted: the queued op fails too
      }
    });
  for (auto& t : ts) t.join();
  for (const auto& m : msgs) {
    EXPECT_EQ(m.rfind(std::to_string(static_cast<int>(ErrorCode::kDeadlineExceeded)), 0), 0u) << m;
    EXPECT_NE(m.find("group tp[stage 0]"), std::string::npos) << m;
    EXPECT_NE(m.find("all_reduce_sum"), std::string::npos) << m;
    EXPECT_NE(m.find("waiting for rank 2"), std::string::npos) << m;
  }
}

struct RankComm {
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm;
};
RankComm cpu_rank(int port, const std::string& name, int rank, int size, bool shm,
                  double timeout_seconds) {
  RankComm g;
  g.store = std::make_unique<StoreClient>(
      StoreClientParams{.host = "127.0.0.1", .port = port, .connect_timeout_seconds = 10.0});
  g.comm = make_cpu_communicator({.name = name,
                                  .rank = rank,
                                  .size = size,
                                  .timeout_seconds = timeout_seconds,
                                  .store = g.store.get(),
                                  .intra_node_shm = shm});
  return g;
}

// Processes over Gloo (shm off) and over shared memory (shm on), groups of 2 and 3.
class AsyncProcesses : public ::testing::TestWithParam<std::tuple<bool, int>> {
 protected:
  void SetUp() override {
    if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  }
  bool shm() const { return std::get<0>(GetParam()); }
  int n() const { return std::get<1>(GetParam()); }
  StoreServer server_{StoreServerParams{}};
};

TEST_P(AsyncProcesses, OutstandingOpsGiveTheBlockingResults) {
  std::mt19937 rng(std::random_device{}());
  const Case k(n(), rng);  // made before the fork: every child sees the same inputs
  auto out = run_ranks(n(), [&](int r) {
    auto g = cpu_rank(server_.port(), "tp", r, n(), shm(), 10.0);
    const std::string engine = g.comm->engine();
    std::string err = run_sequence(*g.comm, k);
    err += run_sequence(*g.comm, k);  // the progress thread is reused
    return engine + ":" + err;
  });
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok) << describe(out[static_cast<size_t>(r)]);
    EXPECT_EQ(out[static_cast<size_t>(r)].payload, std::string(shm() ? "shm:" : "gloo:"));
  }
}

// Full duplex: every rank sends to the next rank and receives from the previous one with both ops
// in flight at once, the sends issued first (two ranks sending to each other: a send that waited
// for its matching recv before the recv was posted would deadlock until the timeout), two
// messages per pair, then a blocking all-reduce on the same communicator.
TEST_P(AsyncProcesses, SendAndRecvAreInFlightAtOnce) {
  std::mt19937 rng(std::random_device{}());
  const int size = n();
  std::vector<std::vector<float>> first, second;  // [rank]: what rank r sends
  for (int r = 0; r < size; ++r) {
    first.push_back(random_floats(rng, 100000));  // several Gloo chunks
    second.push_back(random_floats(rng, 7));
  }
  auto out = run_ranks(size, [&](int r) {
    auto g = cpu_rank(server_.port(), "pp", r, size, shm(), 10.0);
    const int next = (r + 1) % size, prev = (r + size - 1) % size;
    Tensor a = tensor_of(first[static_cast<size_t>(r)], {100000});
    Tensor b = tensor_of(second[static_cast<size_t>(r)], {7});
    Tensor ra = Tensor::zeros({100000}, DType::kF32), rb = Tensor::zeros({7}, DType::kF32);
    const auto start = Clock::now();
    auto s1 = g.comm->send_async(a, next);
    auto s2 = g.comm->send_async(b, next);
    auto r1 = g.comm->recv_async(ra, prev);
    auto r2 = g.comm->recv_async(rb, prev);
    r2->wait();
    r1->wait();
    s1->wait();
    s2->wait();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    Tensor one = tensor_of({1.0f}, {1});
    g.comm->all_reduce_sum(one);
    std::string err;
    if (!same_bits(ra, first[static_cast<size_t>(prev)])) err += "first message; ";
    if (!same_bits(rb, second[static_cast<size_t>(prev)])) err += "second message; ";
    if (one.f32()[0] != static_cast<float>(size)) err += "all_reduce after; ";
    if (s > 5.0) err += "took " + std::to_string(s) + " s; ";
    return err;
  });
  for (int r = 0; r < size; ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok) << describe(out[static_cast<size_t>(r)]);
    EXPECT_EQ(out[static_cast<size_t>(r)].payload, "") << "rank " << r;
  }
}

TEST_P(AsyncProcesses, WaitNamesTheRankThatNeverJoins) {
  constexpr double kTimeout = 1.0, kSlack = 5.0;
  const int size = std::max(3, n());
  const int idle = size - 1;
  auto out = run_ranks(size, [&](int r) -> std::string {
    auto g = cpu_rank(server_.port(), "tp[stage 0]", r, size, shm(), kTimeout);
    g.comm->barrier();  // the group works
    if (r == idle) {
      g.store->get("release", 20.0);  // alive and connected, but never joins the all-reduce
      return "idle";
    }
    Tensor a = Tensor::zeros({576}, DType::kF32);
    const auto start = Clock::now();
    auto w = g.comm->all_reduce_sum_async(a);
    std::string report = "returned";
    try {
      w->wait();
    } catch (const Error& e) {
      report = std::to_string(static_cast<int>(e.code())) + " " +
               std::to_string(std::chrono::duration<double>(Clock::now() - start).count()) + " " +
               e.what();
    }
    if (g.store->add("failed", 1) == size - 1) g.store->set_string("release", "1");
    return report;
  });
  EXPECT_TRUE(out[static_cast<size_t>(idle)].ok) << describe(out[static_cast<size_t>(idle)]);
  for (int r = 0; r < idle; ++r) {
    const auto& o = out[static_cast<size_t>(r)];
    ASSERT_TRUE(o.ok) << describe(o);
    const std::string& m = o.payload;
    // Rank 0 or 1 may see the other's abort first (shm): then it names the rank it still waits
    // for and the code is still a deadline.
    EXPECT_EQ(m.rfind(std::to_string(static_cast<int>(ErrorCode::kDeadlineExceeded)) + " ", 0), 0u)
        << m;
    EXPECT_NE(m.find("group tp[stage 0]"), std::string::npos) << m;
    EXPECT_NE(m.find("all_reduce_sum"), std::string::npos) << m;
    EXPECT_NE(m.find("waiting for rank " + std::to_string(idle)), std::string::npos) << m;
    EXPECT_LT(std::stod(m.substr(m.find(' ') + 1)), kTimeout + kSlack) << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, AsyncProcesses,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "shm" : "gloo") +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace tessera::comm
