// The shared-memory engine (make_cpu_communicator on one node) across real processes: the
// choice of engine, all_reduce_sum bitwise equal to Gloo's result and to the rank-order reference
// for many sizes (0 elements, non-multiples of 16, several slots), all_gather, broadcast,
// send/recv through its Gloo side, long mixed sequences, groups of 2-4 ranks oversubscribed on
// fewer cores, and no /dev/shm entry left behind.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <set>

#include "multiproc.h"
#include "tessera/comm/groups.h"

namespace tessera::comm {
namespace {

using testing::bytes_of;
using testing::describe;
using testing::run_ranks;

struct CpuRank {
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm;
};
CpuRank cpu_rank(int port, const std::string& name, int rank, int size, bool shm = true,
                 double timeout_seconds = 10.0) {
  CpuRank g;
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

// Inputs with the awkward values a sum must keep bitwise: -0.0, tiny and huge magnitudes.
std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> d(0.0f, 10.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = rng() % 16;
    v[i] = k == 0 ? -0.0f : k == 1 ? d(rng) * 1e-30f : k == 2 ? d(rng) * 1e30f : d(rng);
  }
  return v;
}

std::vector<float> rank_order_sum(const std::vector<std::vector<float>>& in) {
  std::vector<float> s(in[0].size(), 0.0f);
  for (const auto& v : in)
    for (size_t i = 0; i < v.size(); ++i) s[i] += v[i];
  return s;
}

Tensor tensor_of(const std::vector<float>& v) {
  return Tensor::from_floats(v, {static_cast<int64_t>(v.size())});
}

std::set<std::string> shm_entries(const std::string& prefix) {
  std::set<std::string> s;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) s.insert(e->d_name);
    ::closedir(d);
  }
  return s;
}

// Pins this process to the k-th CPUs it may run on (cpus[i] indexes the allowed set), so the
// test means the same inside a cpuset.
void pin_to_cpus(const std::vector<int>& cpus) {
  cpu_set_t allowed, set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  std::vector<int> ids;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) ids.push_back(c);
  if (ids.empty()) return;
  for (int c : cpus) CPU_SET(ids[static_cast<size_t>(c) % ids.size()], &set);
  if (::sched_setaffinity(0, sizeof(set), &set) != 0)
    throw std::runtime_error("sched_setaffinity failed");
}

class ShmGroup : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  }
  int n() const { return GetParam(); }
  StoreServer server_{StoreServerParams{}};
  std::mt19937 rng_{std::random_device{}()};
};

TEST_P(ShmGroup, OneNodeUsesSharedMemoryUnlessAnyRankOptsOut) {
  auto out = run_ranks(n(), [&](int r) {
    auto on = cpu_rank(server_.port(), "on", r, n());
    auto off = cpu_rank(server_.port(), "off", r, n(), /*shm=*/r != n() - 1);
    return on.comm->engine() + " " + off.comm->engine();
  });
  for (const auto& o : out) {
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_EQ(o.payload, "shm gloo");
  }
}

TEST_P(ShmGroup, AllReduceSumIsBitwiseGloosAndTheRankOrderSum) {
  // 0 elements, non-multiples of 16, TP activation sizes, and more than one 512 KiB slot.
  const std::vector<size_t> lens = {0, 1, 3, 15, 16, 17, 100, 512, 576, 2047, 4097, 131072, 300001};
  std::vector<std::vector<std::vector<float>>> in(lens.size());
  for (size_t k = 0; k < lens.size(); ++k)
    for (int r = 0; r < n(); ++r) in[k].push_back(random_floats(rng_, lens[k]));
  auto out = run_ranks(n(), [&](int r) {
    auto s = cpu_rank(server_.port(), "tp", r, n());
    auto g = cpu_rank(server_.port(), "gloo", r, n(), /*shm=*/false);
    if (s.comm->engine() != "shm" || g.comm->engine() != "gloo")
      return "engines " + s.comm->engine() + "/" + g.comm->engine();
    std::string res;
    for (size_t k = 0; k < lens.size(); ++k) {
      Tensor a = tensor_of(in[k][static_cast<size_t>(r)]);
      Tensor b = tensor_of(in[k][static_cast<size_t>(r)]);
      s.comm->all_reduce_sum(a);
      g.comm->all_reduce_sum(b);
      if (std::memcmp(a.data(), b.data(), a.nbytes()) != 0)
        return "differs from gloo at length " + std::to_string(lens[k]);
      res += bytes_of(a.data_as<float>(), lens[k]);
    }
    return res;
  });
  std::string want;
  for (size_t k = 0; k < lens.size(); ++k) {
    const auto ref = rank_order_sum(in[k]);
    want += bytes_of(ref.data(), ref.size());
  }
  for (int r = 0; r < n(); ++r) {
    const auto& o = out[static_cast<size_t>(r)];
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_TRUE(o.payload == want) << "rank " << r << ": " << o.payload.substr(0, 80);
  }
}

TEST_P(ShmGroup, AllGatherAndBroadcastMatchGloo) {
  const std::vector<int64_t> rows = {0, 1, 7, 33, 70000};  // 70000 x 3 floats: two slots
  auto out = run_ranks(n(), [&](int r) {
    auto s = cpu_rank(server_.port(), "tp", r, n());
    auto g = cpu_rank(server_.port(), "gloo", r, n(), /*shm=*/false);
    std::mt19937 rng(static_cast<uint32_t>(r) * 7919u + 1u);
    for (int64_t k : rows) {
      std::vector<float> mine = random_floats(rng, static_cast<size_t>(k * 3));
      Tensor in = Tensor::from_floats(mine, {k, 3});
      Tensor a = Tensor::zeros({k * n(), 3}, DType::kF32);
      Tensor b = Tensor::zeros({k * n(), 3}, DType::kF32);
      s.comm->all_gather(in, a);
      g.comm->all_gather(in, b);
      if (std::memcmp(a.data(), b.data(), a.nbytes()) != 0)
        return "all_gather differs at " + std::to_string(k);
      if (k > 0 && std::memcmp(a.data_as<float>() + r * k * 3, mine.data(), in.nbytes()) != 0)
        return std::string("own rows moved");
      for (int root = 0; root < n(); ++root) {
        Tensor x = tensor_of(mine), y = tensor_of(mine);
        s.comm->broadcast(x, root);
        g.comm->broadcast(y, root);
        if (std::memcmp(x.data(), y.data(), x.nbytes()) != 0)
          return "broadcast differs at " + std::to_string(k);
      }
    }
    return std::string("ok");
  });
  for (const auto& o : out) {
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_EQ(o.payload, "ok");
  }
}

// Blocks larger than a slot's share take several steps, and ranks that need fewer steps (small or
// empty blocks) still run as many as the largest: the result is Gloo's, byte for byte.
TEST_P(ShmGroup, AllToAllOfBlocksLargerThanASlotMatchesGloo) {
  auto out = run_ranks(n(), [&](int r) {
    auto s = cpu_rank(server_.port(), "ep", r, n());
    auto g = cpu_rank(server_.port(), "gloo", r, n(), /*shm=*/false);
    for (int round = 0; round < 3; ++round) {
      // rows[src][dst]: up to 3 x 40,000 rows of 3 floats (1.4 MB) for one pair, some empty.
      auto rows = [&](int src, int dst) -> int64_t {
        const int v = (src * 5 + dst * 3 + round) % 4;
        return v == 0 ? 0 : v == 1 ? 5 : static_cast<int64_t>(v) * 40000;
      };
      std::vector<int64_t> send(static_cast<size_t>(n())), recv(static_cast<size_t>(n()));
      int64_t total_in = 0, total_out = 0;
      for (int d = 0; d < n(); ++d) {
        send[static_cast<size_t>(d)] = rows(r, d);
        recv[static_cast<size_t>(d)] = rows(d, r);
        total_in += rows(r, d);
        total_out += rows(d, r);
      }
      std::mt19937 rng(static_cast<uint32_t>(r * 31 + round));
      Tensor in =
          Tensor::from_floats(random_floats(rng, static_cast<size_t>(total_in * 3)), {total_in, 3});
      Tensor a = Tensor::zeros({total_out, 3}, DType::kF32);
      Tensor b = Tensor::zeros({total_out, 3}, DType::kF32);
      s.comm->all_to_all_v(in, send, a, recv);
      g.comm->all_to_all_v(in, send, b, recv);
      if (std::memcmp(a.data(), b.data(), a.nbytes()) != 0)
        return "all_to_all_v differs from Gloo in round " + std::to_string(round);
    }
    return s.comm->engine();
  });
  for (const auto& o : out) {
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_EQ(o.payload, "shm");
  }
}

TEST_P(ShmGroup, ThousandsOfBackToBackMixedOpsKeepTheirOrder) {
  auto out = run_ranks(
      n(),
      [&](int r) {
        auto s = cpu_rank(server_.port(), "tp", r, n());
        const float w = static_cast<float>(n() * (n() - 1) / 2);
        for (int i = 0; i < 20000; ++i) {
          // Values that change every op: a stale slot from step i-1 or i-2 gives a wrong sum.
          Tensor t = tensor_of({static_cast<float>(r + i), 1.0f, static_cast<float>(-i)});
          s.comm->all_reduce_sum(t);
          const float* f = t.data_as<float>();
          const float want = w + static_cast<float>(n()) * static_cast<float>(i);
          if (f[0] != want || f[1] != static_cast<float>(n()) ||
              f[2] != -static_cast<float>(n() * i))
            return "wrong sum at op " + std::to_string(i);
          if (i % 97 == 0) {
            Tensor in = tensor_of({static_cast<float>(r * 1000 + i)});
            Tensor all = Tensor::zeros({n()}, DType::kF32);
            s.comm->all_gather(in, all);
            for (int q = 0; q < n(); ++q)
              if (all.data_as<float>()[q] != static_cast<float>(q * 1000 + i))
                return "wrong gather at op " + std::to_string(i);
          }
          if (i % 1001 == 0) s.comm->barrier();
        }
        return std::string("ok");
      },
      120.0);
  for (const auto& o : out) {
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_EQ(o.payload, "ok");
  }
}

TEST_P(ShmGroup, SendRecvGoThroughGloo) {
  auto out = run_ranks(n(), [&](int r) {
    auto s = cpu_rank(server_.port(), "pp", r, n());
    Tensor t = tensor_of({static_cast<float>(r), 2.5f});
    const int next = (r + 1) % n(), prev = (r + n() - 1) % n();
    if (r % 2 == 0) {
      s.comm->send(t, next);
      s.comm->recv(t, prev);
    } else {
      Tensor got = Tensor::zeros({2}, DType::kF32);
      s.comm->recv(got, prev);
      s.comm->send(t, next);
      t = got;
    }
    return std::to_string(t.data_as<float>()[0]);
  });
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok) << describe(out[static_cast<size_t>(r)]);
    EXPECT_EQ(out[static_cast<size_t>(r)].payload,
              std::to_string(static_cast<float>((r + n() - 1) % n())));
  }
}

// More ranks than cores: the bounded spin must hand the core over (no livelock), here with every
// rank of the group sharing one core, then the group spread over two.
TEST_P(ShmGroup, OversubscribedRanksMakeProgress) {
  for (const std::vector<int>& cpus : {std::vector<int>{0}, std::vector<int>{0, 1}}) {
    auto out = run_ranks(
        n(),
        [&](int r) {
          pin_to_cpus(cpus);
          auto s = cpu_rank(server_.port(), "tp" + std::to_string(cpus.size()), r, n());
          Tensor t = Tensor::zeros({512}, DType::kF32);
          for (int i = 0; i < 2000; ++i) {
            t.data_as<float>()[0] = 1.0f;
            s.comm->all_reduce_sum(t);
            if (t.data_as<float>()[0] != static_cast<float>(n())) return std::string("wrong sum");
          }
          return std::string("ok");
        },
        60.0);
    for (const auto& o : out) {
      ASSERT_TRUE(o.ok) << cpus.size() << " cpu(s): " << describe(o);
      EXPECT_EQ(o.payload, "ok");
    }
  }
}

TEST_P(ShmGroup, SegmentIsUnlinkedOnceMappedAndNothingIsLeftBehind) {
  const auto before = shm_entries("tessera-shm-");
  auto out = run_ranks(n(), [&](int r) {
    auto s = cpu_rank(server_.port(), "tp", r, n());
    Tensor t = Tensor::zeros({64}, DType::kF32);
    s.comm->all_reduce_sum(t);
    // Rank 0 made the segment; its name carries rank 0's pid. Once connected, it is unlinked.
    std::string mine = s.store->get_string("tp/shm/segment", 5.0);
    s.comm->barrier();
    return std::to_string(shm_entries(mine.substr(1)).size());
  });
  for (const auto& o : out) {
    ASSERT_TRUE(o.ok) << describe(o);
    EXPECT_EQ(o.payload, "0") << "the segment is still linked in /dev/shm after connect";
  }
  const auto after = shm_entries("tessera-shm-");
  for (const auto& e : after) EXPECT_TRUE(before.count(e)) << "left behind: /dev/shm/" << e;
}

INSTANTIATE_TEST_SUITE_P(Ranks, ShmGroup, ::testing::Values(2, 3, 4));

}  // namespace
}  // namespace tessera::comm
