// The Gloo engine across real processes: every collective for groups of 2, 3 and 4 ranks, long
// sequences, mixed sizes, and two groups sharing one store. Inputs are drawn fresh in the parent
// before forking, so every child knows every rank's input and the parent checks the results.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "multiproc.h"
#include "tessera/comm/groups.h"

namespace tessera::comm {
namespace {

using testing::bytes_of;
using testing::describe;
using testing::gloo_rank;
using testing::run_ranks;

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> d(0.0f, 10.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The reference: the sum in rank order, as the interface promises.
std::vector<float> rank_order_sum(const std::vector<std::vector<float>>& in) {
  std::vector<float> s(in[0].size(), 0.0f);
  for (const auto& v : in)
    for (size_t i = 0; i < v.size(); ++i) s[i] += v[i];
  return s;
}

Tensor tensor_of(const std::vector<float>& v) {
  return Tensor::from_floats(v, {static_cast<int64_t>(v.size())});
}

class GlooGroup : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  }
  int n() const { return GetParam(); }
  StoreServer server_{StoreServerParams{}};
  std::mt19937 rng_{std::random_device{}()};
};

TEST_P(GlooGroup, AllReduceSumIsTheRankOrderSumBitwiseOnEveryRank) {
  const std::vector<size_t> lens = {1, 576, 4097, 100003};
  // in[k][r]: the input of rank r for length lens[k]
  std::vector<std::vector<std::vector<float>>> in(lens.size());
  for (size_t k = 0; k < lens.size(); ++k)
    for (int r = 0; r < n(); ++r) in[k].push_back(random_floats(rng_, lens[k]));
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "tp", r, n());
    std::string res;
    for (size_t k = 0; k < lens.size(); ++k) {
      Tensor t = tensor_of(in[k][static_cast<size_t>(r)]);
      g.comm->all_reduce_sum(t);
      res += bytes_of(t.data_as<float>(), lens[k]);
    }
    return res;
  });
  std::string expect;
  for (size_t k = 0; k < lens.size(); ++k) {
    auto s = rank_order_sum(in[k]);
    expect += bytes_of(s.data(), s.size());
  }
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    EXPECT_TRUE(out[static_cast<size_t>(r)].payload == expect) << "rank " << r << " differs";
  }
}

TEST_P(GlooGroup, AllGatherConcatenatesInRankOrder) {
  std::vector<std::vector<float>> in;
  for (int r = 0; r < n(); ++r) in.push_back(random_floats(rng_, 3 * 5));
  std::vector<std::vector<int32_t>> ints;  // a non-F32 dtype goes through as bytes
  for (int r = 0; r < n(); ++r) {
    std::vector<int32_t> v(7);
    for (auto& x : v) x = static_cast<int32_t>(rng_());
    ints.push_back(v);
  }
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "world", r, n());
    Tensor mine = Tensor::from_floats(in[static_cast<size_t>(r)], {3, 5});
    Tensor all = Tensor::zeros({3 * n(), 5}, DType::kF32);
    g.comm->all_gather(mine, all);
    Tensor mi = Tensor::zeros({7}, DType::kI32);
    std::memcpy(mi.data(), ints[static_cast<size_t>(r)].data(), 28);
    Tensor ai = Tensor::zeros({7 * n()}, DType::kI32);
    g.comm->all_gather(mi, ai);
    return bytes_of(all.data_as<float>(), static_cast<size_t>(all.numel())) +
           bytes_of(ai.data_as<int32_t>(), static_cast<size_t>(ai.numel()));
  });
  std::string expect;
  for (const auto& v : in) expect += bytes_of(v.data(), v.size());
  for (const auto& v : ints) expect += bytes_of(v.data(), v.size());
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    EXPECT_TRUE(out[static_cast<size_t>(r)].payload == expect) << "rank " << r;
  }
}

TEST_P(GlooGroup, BroadcastFromEveryRoot) {
  std::vector<std::vector<float>> in;
  for (int r = 0; r < n(); ++r) in.push_back(random_floats(rng_, 33));
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "world", r, n());
    std::string res;
    for (int root = 0; root < n(); ++root) {
      Tensor t = tensor_of(in[static_cast<size_t>(r)]);
      g.comm->broadcast(t, root);
      res += bytes_of(t.data_as<float>(), 33);
    }
    return res;
  });
  std::string expect;
  for (int root = 0; root < n(); ++root)
    expect += bytes_of(in[static_cast<size_t>(root)].data(), 33);
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    EXPECT_TRUE(out[static_cast<size_t>(r)].payload == expect) << "rank " << r;
  }
}

TEST_P(GlooGroup, SendRecvRingBothWays) {
  std::vector<std::vector<float>> in;
  for (int r = 0; r < n(); ++r) in.push_back(random_floats(rng_, 100));
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "pp", r, n());
    const int next = (r + 1) % n(), prev = (r + n() - 1) % n();
    Tensor mine = tensor_of(in[static_cast<size_t>(r)]);
    Tensor a = Tensor::zeros({100}, DType::kF32), b = Tensor::zeros({100}, DType::kF32);
    // A send completes when the peer receives, so rank 0 starts the ring and the others relay.
    if (r == 0) {
      g.comm->send(mine, next);
      g.comm->recv(a, prev);
      g.comm->recv(b, next);
      g.comm->send(mine, prev);
    } else {
      g.comm->recv(a, prev);
      g.comm->send(mine, next);
      g.comm->send(mine, prev);
      g.comm->recv(b, next);
    }
    return bytes_of(a.data_as<float>(), 100) + bytes_of(b.data_as<float>(), 100);
  });
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    const int next = (r + 1) % n(), prev = (r + n() - 1) % n();
    EXPECT_TRUE(out[static_cast<size_t>(r)].payload ==
                bytes_of(in[static_cast<size_t>(prev)].data(), 100) +
                    bytes_of(in[static_cast<size_t>(next)].data(), 100))
        << "rank " << r;
  }
}

TEST_P(GlooGroup, BarrierWaitsForTheSlowestRank) {
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "world", r, n());
    std::string res;
    for (int round = 0; round < 4; ++round) {
      const std::string key = "arrived/" + std::to_string(round);
      if (r == round % n()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      g.store->add(key, 1);
      g.comm->barrier();
      // Everyone has counted itself in before anyone leaves the barrier.
      res += std::to_string(g.store->add(key, 0)) + " ";
    }
    return res;
  });
  std::string expect;
  for (int round = 0; round < 4; ++round) expect += std::to_string(n()) + " ";
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    EXPECT_EQ(out[static_cast<size_t>(r)].payload, expect) << "rank " << r;
  }
}

TEST_P(GlooGroup, ThousandSmallAllReducesAndMixedSizes) {
  constexpr int kSmall = 1000;
  std::vector<std::vector<float>> small;  // small[r]: kSmall x 16 floats
  for (int r = 0; r < n(); ++r) small.push_back(random_floats(rng_, kSmall * 16));
  const std::vector<size_t> sizes = {0, 1, 7, 576, 10000, 300000, 3, 65536};
  std::vector<std::vector<float>> mixed;  // mixed[r]: every size back to back
  size_t total = 0;
  for (size_t s : sizes) total += s;
  for (int r = 0; r < n(); ++r) mixed.push_back(random_floats(rng_, total));
  auto out = run_ranks(n(), [&](int r) {
    auto g = gloo_rank(server_.port(), "tp", r, n());
    int bad = 0;
    for (int i = 0; i < kSmall; ++i) {
      std::vector<std::vector<float>> parts;
      for (int q = 0; q < n(); ++q)
        parts.emplace_back(small[static_cast<size_t>(q)].begin() + i * 16,
                           small[static_cast<size_t>(q)].begin() + (i + 1) * 16);
      Tensor t = tensor_of(parts[static_cast<size_t>(r)]);
      g.comm->all_reduce_sum(t);
      bad += std::memcmp(t.data(), rank_order_sum(parts).data(), 16 * sizeof(float)) != 0;
    }
    size_t off = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      const size_t s = sizes[k];
      std::vector<std::vector<float>> parts;
      for (int q = 0; q < n(); ++q)
        parts.emplace_back(mixed[static_cast<size_t>(q)].begin() + static_cast<ptrdiff_t>(off),
                           mixed[static_cast<size_t>(q)].begin() + static_cast<ptrdiff_t>(off + s));
      Tensor t = tensor_of(parts[static_cast<size_t>(r)]);
      // Alternate the ops so that slots of different kinds and sizes follow each other.
      if (k % 3 == 0) {
        g.comm->all_reduce_sum(t);
        bad += s && std::memcmp(t.data(), rank_order_sum(parts).data(), s * 4) != 0;
      } else if (k % 3 == 1) {
        Tensor all = Tensor::zeros({static_cast<int64_t>(s) * n()}, DType::kF32);
        g.comm->all_gather(t, all);
        for (int q = 0; q < n(); ++q)
          bad += s && std::memcmp(all.data_as<float>() + q * s,
                                  parts[static_cast<size_t>(q)].data(), s * 4) != 0;
      } else {
        const int root = static_cast<int>(k) % n();
        g.comm->broadcast(t, root);
        bad += s && std::memcmp(t.data(), parts[static_cast<size_t>(root)].data(), s * 4) != 0;
      }
      off += s;
    }
    return std::to_string(bad);
  });
  for (int r = 0; r < n(); ++r) {
    ASSERT_TRUE(out[static_cast<size_t>(r)].ok)
        << "rank " << r << ": " << describe(out[static_cast<size_t>(r)]);
    EXPECT_EQ(out[static_cast<size_t>(r)].payload, "0") << "rank " << r << ": results that differ";
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, GlooGroup, ::testing::Values(2, 3, 4));

// A 2 x 2 topology: world rank w is TP rank w % 2 of "tp[stage w / 2]" and PP rank w / 2 of
// "pp[tp w % 2]"; all four groups connect through one store.
TEST(GlooGroups, TensorAndPipelineGroupsShareOneStore) {
  if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  StoreServer server({});
  std::mt19937 rng(std::random_device{}());
  std::vector<std::vector<float>> in;
  for (int w = 0; w < 4; ++w) in.push_back(random_floats(rng, 64));
  auto out = run_ranks(4, [&](int w) {
    const int stage = w / 2, tp = w % 2;
    StoreClient store({.host = "127.0.0.1", .port = server.port()});
    auto tpg = make_gloo_communicator({.name = "tp[stage " + std::to_string(stage) + "]",
                                       .rank = tp,
                                       .size = 2,
                                       .timeout_seconds = 10,
                                       .store = &store});
    auto ppg = make_gloo_communicator({.name = "pp[tp " + std::to_string(tp) + "]",
                                       .rank = stage,
                                       .size = 2,
                                       .timeout_seconds = 10,
                                       .store = &store});
    Tensor t = tensor_of(in[static_cast<size_t>(w)]);
    tpg->all_reduce_sum(t);
    if (stage == 0) {
      ppg->send(t, 1);
      return bytes_of(t.data_as<float>(), 64);
    }
    Tensor got = Tensor::zeros({64}, DType::kF32);
    ppg->recv(got, 0);
    return bytes_of(got.data_as<float>(), 64);
  });
  // Every process ends up with stage 0's TP sum: computed there, passed down the pipeline.
  const auto s = rank_order_sum({in[0], in[1]});
  for (int w = 0; w < 4; ++w) {
    ASSERT_TRUE(out[static_cast<size_t>(w)].ok)
        << "world rank " << w << ": " << describe(out[static_cast<size_t>(w)]);
    EXPECT_TRUE(out[static_cast<size_t>(w)].payload == bytes_of(s.data(), 64))
        << "world rank " << w;
  }
}

TEST(GlooGroups, GroupOfOneAndArgumentChecks) {
  if (!have_gloo()) GTEST_SKIP() << "built without Gloo";
  StoreServer server({});
  StoreClient store({.host = "127.0.0.1", .port = server.port()});
  auto c = make_gloo_communicator({.name = "solo", .rank = 0, .size = 1, .store = &store});
  EXPECT_EQ(c->engine(), "gloo");
  EXPECT_EQ(c->name(), "solo");
  std::mt19937 rng(std::random_device{}());
  const auto v = random_floats(rng, 10);
  Tensor t = tensor_of(v);
  c->all_reduce_sum(t);
  c->broadcast(t, 0);
  c->barrier();
  Tensor all = Tensor::zeros({10}, DType::kF32);
  c->all_gather(t, all);
  EXPECT_EQ(std::memcmp(all.data(), v.data(), 40), 0);
  EXPECT_EQ(std::memcmp(t.data(), v.data(), 40), 0);
  // Misuse is an argument error and leaves the communicator usable.
  Tensor wrong = Tensor::zeros({3}, DType::kF32);
  EXPECT_THROW(c->all_gather(t, wrong), Error);
  Tensor ints = Tensor::zeros({3}, DType::kI32);
  EXPECT_THROW(c->all_reduce_sum(ints), Error);
  EXPECT_THROW(c->send(t, 0), Error);
  EXPECT_THROW(c->broadcast(t, 1), Error);
  EXPECT_FALSE(c->aborted());
  EXPECT_THROW(make_gloo_communicator({.name = "x", .rank = 2, .size = 2, .store = &store}), Error);
  EXPECT_THROW(make_gloo_communicator({.name = "x", .rank = 0, .size = 2}), Error);
}

}  // namespace
}  // namespace tessera::comm
