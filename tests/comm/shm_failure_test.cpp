// The shared-memory engine when ranks misbehave, as tests/comm/gloo_failure_test.cpp does for
// Gloo: a rank that never calls the op (the others time out naming it), a rank killed mid-run
// (found dead well before the timeout), a rank whose communicator was destroyed, and a failed
// send/recv. Every failure names the group, the op and the rank, and leaves the communicator
// aborted; no /dev/shm entry is left behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <sstream>

#include "multiproc.h"
#include "tessera/comm/groups.h"

namespace tessera::comm {
namespace {

using testing::describe;
using testing::run_ranks;
using Clock = std::chrono::steady_clock;

constexpr double kTimeout = 1.0;
constexpr double kSlack = 5.0;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct CpuRank {
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm;
};
CpuRank cpu_rank(int port, const std::string& name, int rank, int size, double timeout) {
  CpuRank g;
  g.store = std::make_unique<StoreClient>(
      StoreClientParams{.host = "127.0.0.1", .port = port, .connect_timeout_seconds = 10.0});
  g.comm = make_cpu_communicator({.name = name,
                                  .rank = rank,
                                  .size = size,
                                  .timeout_seconds = timeout,
                                  .store = g.store.get()});
  if (g.comm->engine() != "shm") throw std::runtime_error("not shm: " + g.comm->engine());
  return g;
}

// code, seconds, message, aborted(), and the code of the next call, one per line.
std::string failure_report(Communicator& c, const Error& e, double seconds) {
  std::ostringstream os;
  os << static_cast<int>(e.code()) << '\n'
     << seconds << '\n'
     << e.what() << '\n'
     << c.aborted() << '\n';
  try {
    c.barrier();
    os << "no error";
  } catch (const Error& again) {
    os << static_cast<int>(again.code());
  }
  return os.str();
}

struct Report {
  ErrorCode code;
  double seconds;
  std::string message;
  bool aborted;
  std::string next;
};
Report parse(const std::string& s) {
  std::istringstream is(s);
  Report r;
  int code;
  is >> code >> r.seconds;
  is.ignore();
  std::getline(is, r.message);
  is >> r.aborted;
  is.ignore();
  std::getline(is, r.next);
  r.code = static_cast<ErrorCode>(code);
  return r;
}

class ShmFailure : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  }
  StoreServer server_{StoreServerParams{}};
};

TEST_F(ShmFailure, RankThatNeverCallsTheOpIsNamedByEveryOtherRank) {
  for (const char* op : {"all_reduce_sum", "all_gather", "broadcast", "barrier"}) {
    const std::string group = std::string("tp[") + op + "]";
    auto out = run_ranks(4, [&](int r) -> std::string {
      auto g = cpu_rank(server_.port(), group, r, 4, kTimeout);
      g.comm->barrier();  // the group works
      if (r == 2) {
        g.store->get(group + "release", 20.0);  // alive and mapped, but never joins the op
        return "idle";
      }
      Tensor t = Tensor::zeros({576}, DType::kF32);
      Tensor all = Tensor::zeros({576 * 4}, DType::kF32);
      const auto start = Clock::now();
      std::string report = "returned";
      try {
        const std::string o = op;
        if (o == "all_reduce_sum") g.comm->all_reduce_sum(t);
        if (o == "all_gather") g.comm->all_gather(t, all);
        if (o == "broadcast") g.comm->broadcast(t, 0);
        if (o == "barrier") g.comm->barrier();
      } catch (const Error& e) {
        report = failure_report(*g.comm, e, since(start));
      }
      if (g.store->add(group + "failed", 1) == 3) g.store->set_string(group + "release", "1");
      return report;
    });
    EXPECT_TRUE(out[2].ok) << describe(out[2]);
    for (int r : {0, 1, 3}) {
      const auto& o = out[static_cast<size_t>(r)];
      ASSERT_TRUE(o.ok) << op << ": " << describe(o);
      const Report rep = parse(o.payload);
      EXPECT_EQ(rep.code, ErrorCode::kDeadlineExceeded) << o.payload;
      EXPECT_NE(rep.message.find("group " + group + ": " + op + " on rank " + std::to_string(r)),
                std::string::npos)
          << rep.message;
      EXPECT_NE(rep.message.find("waiting for rank 2"), std::string::npos) << rep.message;
      EXPECT_LT(rep.seconds, kTimeout + kSlack);
      EXPECT_GT(rep.seconds, kTimeout * 0.5);
      EXPECT_TRUE(rep.aborted);
      EXPECT_EQ(rep.next, std::to_string(static_cast<int>(ErrorCode::kUnavailable)));
    }
  }
}

TEST_F(ShmFailure, RankKilledMidSequenceIsFoundDeadBeforeTheTimeout) {
  constexpr double kLongTimeout = 30.0;  // death must be noticed long before this
  auto out = run_ranks(
      3,
      [&](int r) -> std::string {
        auto g = cpu_rank(server_.port(), "tp", r, 3, kLongTimeout);
        Tensor t = Tensor::zeros({64}, DType::kF32);
        for (int i = 0; i < 100000; ++i) {
          if (r == 2 && i == 20) ::raise(SIGKILL);
          const auto start = Clock::now();
          try {
            g.comm->all_reduce_sum(t);
          } catch (const Error& e) {
            return failure_report(*g.comm, e, since(start));
          }
        }
        return "never failed";
      },
      60.0);
  EXPECT_TRUE(out[2].signaled && out[2].signal == SIGKILL) << describe(out[2]);
  int named_the_dead = 0;
  for (int r : {0, 1}) {
    const auto& o = out[static_cast<size_t>(r)];
    ASSERT_TRUE(o.ok) << describe(o);
    const Report rep = parse(o.payload);
    EXPECT_EQ(rep.code, ErrorCode::kUnavailable) << o.payload;
    EXPECT_NE(rep.message.find("group tp: all_reduce_sum on rank " + std::to_string(r)),
              std::string::npos)
        << rep.message;
    named_the_dead += rep.message.find("rank 2 died") != std::string::npos;
    EXPECT_LT(rep.seconds, 5.0) << rep.message;
    EXPECT_TRUE(rep.aborted);
  }
  EXPECT_GE(named_the_dead, 1) << "no survivor named the killed rank";
}

TEST_F(ShmFailure, RankWhoseCommunicatorIsGoneIsNamed) {
  auto out = run_ranks(2, [&](int r) -> std::string {
    auto g = cpu_rank(server_.port(), "tp", r, 2, 30.0);
    g.comm->barrier();
    if (r == 1) {
      g.comm.reset();
      g.store->set_string("gone", "1");
      g.store->get("release", 20.0);
      return "left";
    }
    g.store->get("gone", 10.0);
    Tensor t = Tensor::zeros({8}, DType::kF32);
    const auto start = Clock::now();
    std::string report = "returned";
    try {
      g.comm->all_reduce_sum(t);
    } catch (const Error& e) {
      report = failure_report(*g.comm, e, since(start));
    }
    g.store->set_string("release", "1");
    return report;
  });
  ASSERT_TRUE(out[0].ok) << describe(out[0]);
  const Report rep = parse(out[0].payload);
  EXPECT_EQ(rep.code, ErrorCode::kUnavailable) << out[0].payload;
  EXPECT_NE(rep.message.find("group tp: all_reduce_sum on rank 0 failed: rank 1 left the group"),
            std::string::npos)
      << rep.message;
  EXPECT_LT(rep.seconds, 5.0);
}

TEST_F(ShmFailure, RecvFromASilentPeerNamesItAndAbortsTheCollectives) {
  auto out = run_ranks(2, [&](int r) -> std::string {
    auto g = cpu_rank(server_.port(), "pp[tp 0]", r, 2, kTimeout);
    if (r == 0) {
      g.store->get("release", 20.0);
      return "idle";
    }
    Tensor t = Tensor::zeros({16}, DType::kF32);
    const auto start = Clock::now();
    std::string report = "returned";
    try {
      g.comm->recv(t, 0);
    } catch (const Error& e) {
      report = failure_report(*g.comm, e, since(start));
    }
    g.store->set_string("release", "1");
    return report;
  });
  ASSERT_TRUE(out[1].ok) << describe(out[1]);
  const Report rep = parse(out[1].payload);
  EXPECT_EQ(rep.code, ErrorCode::kDeadlineExceeded) << out[1].payload;
  EXPECT_NE(rep.message.find("pp[tp 0]: recv on rank 1"), std::string::npos) << rep.message;
  EXPECT_NE(rep.message.find("waiting for rank 0"), std::string::npos) << rep.message;
  EXPECT_LT(rep.seconds, kTimeout + kSlack);
  EXPECT_TRUE(rep.aborted);
  EXPECT_EQ(rep.next, std::to_string(static_cast<int>(ErrorCode::kUnavailable)));
}

}  // namespace
}  // namespace tessera::comm
