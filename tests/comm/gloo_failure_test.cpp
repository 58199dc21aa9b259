// The Gloo engine when ranks misbehave: a rank that never calls the op, a rank killed mid-run, a
// rank that never starts. The others must fail within the timeout (plus slack for process and
// socket teardown) with an error naming the group, the op and the missing rank, never hang.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <sstream>

#include "multiproc.h"
#include "tessera/comm/groups.h"

namespace tessera::comm {
namespace {

using testing::describe;
using testing::gloo_rank;
using testing::run_ranks;
using Clock = std::chrono::steady_clock;

constexpr double kTimeout = 1.0;
constexpr double kSlack = 5.0;  // generous: loaded CI machines, process start-up

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// What a child saw when its op failed, as text lines for the parent: code, seconds, message,
// aborted() afterwards, and the code of the next call.
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

class GlooFailure : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  }
  StoreServer server_{StoreServerParams{}};
};

TEST_F(GlooFailure, RankThatNeverCallsTheOpIsNamed) {
  auto out = run_ranks(3, [&](int r) -> std::string {
    auto g = gloo_rank(server_.port(), "tp[stage 0]", r, 3, kTimeout);
    g.comm->barrier();  // the group works
    if (r == 2) {
      g.store->get("release", 20.0);  // alive, connected, but never joins the all-reduce
      return "idle";
    }
    Tensor t = Tensor::zeros({576}, DType::kF32);
    const auto start = Clock::now();
    std::string report = "returned";
    try {
      g.comm->all_reduce_sum(t);
    } catch (const Error& e) {
      report = failure_report(*g.comm, e, since(start));
    }
    if (g.store->add("failed", 1) == 2) g.store->set_string("release", "1");
    return report;
  });
  EXPECT_TRUE(out[2].ok) << describe(out[2]);
  for (int r : {0, 1}) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok) << describe(out[static_cast<size_t>(r)]);
    const Report rep = parse(out[static_cast<size_t>(r)].payload);
    EXPECT_EQ(rep.code, ErrorCode::kDeadlineExceeded) << out[static_cast<size_t>(r)].payload;
    EXPECT_NE(rep.message.find("group tp[stage 0]"), std::string::npos) << rep.message;
    EXPECT_NE(rep.message.find("all_reduce_sum"), std::string::npos) << rep.message;
    EXPECT_NE(rep.message.find("waiting for rank 2"), std::string::npos) << rep.message;
    EXPECT_LT(rep.seconds, kTimeout + kSlack);
    EXPECT_TRUE(rep.aborted);
    EXPECT_EQ(rep.next, std::to_string(static_cast<int>(ErrorCode::kUnavailable)));
  }
}

TEST_F(GlooFailure, RecvFromASilentPeerNamesIt) {
  auto out = run_ranks(2, [&](int r) -> std::string {
    auto g = gloo_rank(server_.port(), "pp[tp 0]", r, 2, kTimeout);
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
}

TEST_F(GlooFailure, RankKilledMidSequenceFailsTheOthersInsteadOfHanging) {
  constexpr double kLongerTimeout = 2.0;
  auto out = run_ranks(3, [&](int r) -> std::string {
    auto g = gloo_rank(server_.port(), "tp", r, 3, kLongerTimeout);
    Tensor t = Tensor::zeros({64}, DType::kF32);
    for (int i = 0; i < 100000; ++i) {
      if (r == 2 && i == 20) ::raise(SIGKILL);
      const auto start = Clock::now();
      try {
        g.comm->all_reduce_sum(t);
      } catch (const Error& e) {
        return failure_report(*g.comm, e, since(start)) + "\n" + std::to_string(i);
      }
    }
    return "never failed";
  });
  EXPECT_TRUE(out[2].signaled && out[2].signal == SIGKILL) << describe(out[2]);
  // The first survivor to notice names rank 2; it then closes its own connections, so the other
  // may instead report losing the first one (both are aborted either way).
  int named_the_dead = 0;
  for (int r : {0, 1}) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok) << describe(out[static_cast<size_t>(r)]);
    const Report rep = parse(out[static_cast<size_t>(r)].payload);
    EXPECT_TRUE(rep.code == ErrorCode::kUnavailable || rep.code == ErrorCode::kDeadlineExceeded)
        << out[static_cast<size_t>(r)].payload;
    EXPECT_NE(rep.message.find("group tp: all_reduce_sum"), std::string::npos) << rep.message;
    named_the_dead += rep.message.find("rank 2") != std::string::npos;
    EXPECT_TRUE(rep.message.find("connection to rank ") != std::string::npos ||
                rep.message.find("waiting for rank ") != std::string::npos)
        << rep.message;
    EXPECT_LT(rep.seconds, kLongerTimeout + kSlack);
    EXPECT_TRUE(rep.aborted);
  }
  EXPECT_GE(named_the_dead, 1) << "no survivor named the killed rank";
}

TEST_F(GlooFailure, ConnectTimeoutNamesTheRankThatNeverStarted) {
  // A group of 4 where only ranks 0 and 2 ever start.
  auto out = run_ranks(2, [&](int i) -> std::string {
    const auto start = Clock::now();
    try {
      gloo_rank(server_.port(), "tp[stage 1]", i * 2, 4, kTimeout);
    } catch (const Error& e) {
      std::ostringstream os;
      os << static_cast<int>(e.code()) << '\n' << since(start) << '\n' << e.what();
      return os.str();
    }
    return "connected";
  });
  for (int i : {0, 1}) {
    ASSERT_TRUE(out[static_cast<size_t>(i)].ok) << describe(out[static_cast<size_t>(i)]);
    std::istringstream is(out[static_cast<size_t>(i)].payload);
    int code;
    double seconds;
    std::string message;
    is >> code >> seconds;
    is.ignore();
    std::getline(is, message);
    EXPECT_EQ(static_cast<ErrorCode>(code), ErrorCode::kDeadlineExceeded)
        << out[static_cast<size_t>(i)].payload;
    EXPECT_NE(message.find("group tp[stage 1]: connect"), std::string::npos) << message;
    EXPECT_NE(message.find("waiting for rank 1, 3"), std::string::npos) << message;
    EXPECT_LT(seconds, kTimeout + kSlack);
  }
}

}  // namespace
}  // namespace tessera::comm
