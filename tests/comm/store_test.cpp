// The rendezvous store: set/get/add/has across clients, blocking gets, timeouts that name the
// key, and a server that survives garbage and oversized frames from a raw socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "tessera/comm/rendezvous.h"
#include "tessera/core/error.h"

namespace tessera::comm {
namespace {

std::vector<uint8_t> random_bytes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

StoreClientParams at(const StoreServer& s) { return {.host = "127.0.0.1", .port = s.port()}; }

int raw_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

// True when the server closes the connection within a few seconds.
bool closed_by_server(int fd) {
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  const ssize_t n = ::recv(fd, &c, 1, 0);
  // A close with our junk still unread arrives as a reset rather than an orderly EOF.
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

TEST(Store, SetGetHasAcrossClients) {
  StoreServer server({});
  ASSERT_GT(server.port(), 0);
  StoreClient a(at(server)), b(at(server));
  std::mt19937 rng(std::random_device{}());
  const auto v1 = random_bytes(rng, 1 + rng() % 3000);
  const auto big = random_bytes(rng, 3 << 20);  // several socket buffers' worth
  EXPECT_FALSE(b.has("k1"));
  a.set("k1", v1);
  a.set("big", big);
  EXPECT_TRUE(b.has("k1"));
  EXPECT_EQ(b.get("k1", 1.0), v1);
  EXPECT_EQ(b.get("big", 1.0), big);
  a.set("k1", {});  // overwrite with an empty value
  EXPECT_TRUE(b.get("k1", 1.0).empty());
  // The coordinator's direct view agrees, both ways.
  EXPECT_EQ(server.value("big"), big);
  server.set("from_server", v1);
  EXPECT_EQ(a.get("from_server", 1.0), v1);
  EXPECT_FALSE(server.has("nope"));
  EXPECT_THROW(server.value("nope"), Error);
}

TEST(Store, GetBlocksUntilAnotherClientSets) {
  StoreServer server({});
  StoreClient waiter(at(server));
  std::mt19937 rng(std::random_device{}());
  const auto v = random_bytes(rng, 64);
  std::thread setter([&] {
    StoreClient c(at(server));
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    c.set("late", v);
  });
  EXPECT_EQ(waiter.get("late", 10.0), v);
  setter.join();
  // A direct set on the server wakes a parked get too.
  std::thread direct([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.set("direct", v);
  });
  EXPECT_EQ(waiter.get("direct", 10.0), v);
  direct.join();
}

TEST(Store, GetTimeoutNamesTheKey) {
  StoreServer server({});
  StoreClient c(at(server));
  try {
    c.get("never/set/key", 0.2);
    FAIL() << "get of a missing key returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDeadlineExceeded);
    EXPECT_NE(std::string(e.what()).find("never/set/key"), std::string::npos) << e.what();
  }
  // The connection is still usable afterwards.
  c.set_string("after", "yes");
  EXPECT_EQ(c.get_string("after", 1.0), "yes");
}

TEST(Store, AddIsAtomicAcrossClients) {
  StoreServer server({});
  constexpr int kThreads = 4, kAdds = 200;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      StoreClient c(at(server));
      for (int i = 0; i < kAdds; ++i) c.add("counter", t + 1);
    });
  for (auto& t : ts) t.join();
  StoreClient c(at(server));
  const int64_t expect = kAdds * (1 + 2 + 3 + 4);
  EXPECT_EQ(c.add("counter", 0), expect);
  EXPECT_EQ(c.get_string("counter", 1.0), std::to_string(expect));  // counters read as text
  EXPECT_EQ(c.add("counter", -expect - 5), -5);
  c.set_string("text", "not a number");
  try {
    c.add("text", 1);
    FAIL() << "add on a non-counter succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(c.add("counter", 1), -4);  // the connection survived the refusal
  // Overflow is refused, not wrapped (fuzz_rendezvous_store found a signed overflow here).
  EXPECT_EQ(c.add("big", INT64_MAX - 1), INT64_MAX - 1);
  EXPECT_THROW(c.add("big", 2), Error);
  EXPECT_EQ(c.add("big", 1), INT64_MAX);
  EXPECT_EQ(c.add("big", -1), INT64_MAX - 1);
}

TEST(Store, GarbageAndOversizedFramesOnlyCloseThatConnection) {
  StoreServer server({});
  StoreClient good(at(server));
  good.set_string("k", "v");
  std::mt19937 rng(std::random_device{}());

  // Random bytes: an unknown op or absurd sizes in the first header.
  for (int i = 0; i < 5; ++i) {
    int fd = raw_connect(server.port());
    auto junk = random_bytes(rng, 4096);
    junk[0] = static_cast<uint8_t>(6 + rng() % 250);  // never a valid op
    ASSERT_EQ(::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(junk.size()));
    EXPECT_TRUE(closed_by_server(fd));
    ::close(fd);
  }
  // A SET announcing a 1 GiB value, and one announcing a 1 MiB key: refused from the header.
  for (auto [klen, vlen] : {std::pair<uint32_t, uint64_t>{4, 1ull << 30}, {1u << 20, 4}}) {
    int fd = raw_connect(server.port());
    uint8_t hdr[13];
    hdr[0] = 1;
    std::memcpy(hdr + 1, &klen, 4);
    std::memcpy(hdr + 5, &vlen, 8);
    ASSERT_EQ(::send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), 13);
    EXPECT_TRUE(closed_by_server(fd));
    ::close(fd);
  }
  // A client that sends half a frame and vanishes.
  {
    int fd = raw_connect(server.port());
    uint8_t hdr[7] = {1, 3, 0, 0, 0, 9, 0};
    ::send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL);
    ::close(fd);
  }
  // Oversized requests are refused on the client side before they are sent.
  EXPECT_THROW(good.set(std::string(5000, 'k'), {}), Error);
  // Everyone else is unaffected.
  EXPECT_EQ(good.get_string("k", 1.0), "v");
  StoreClient fresh(at(server));
  fresh.set_string("k2", "v2");
  EXPECT_EQ(good.get_string("k2", 1.0), "v2");
}

// A store with a secret: clients that present it work as before; one with another secret, one
// with none, and a raw connection that skips AUTH are refused and closed; nothing they sent
// lands in the store.
TEST(Store, SecretGatesEveryConnection) {
  const std::string secret = "s3cret-" + std::to_string(std::random_device{}());
  StoreServer server({.secret = secret});
  auto with = [&](std::string s) {
    StoreClientParams p = at(server);
    p.secret = std::move(s);
    return p;
  };
  StoreClient good(with(secret));
  good.set_string("k", "v");
  EXPECT_EQ(good.get_string("k", 1.0), "v");
  try {
    StoreClient wrong(with(secret + "x"));
    FAIL() << "a wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("refused this process's group secret"),
              std::string::npos)
        << e.what();
  }
  StoreClient none(at(server));  // connects; its first request is refused
  try {
    none.set_string("intruder", "x");
    FAIL() << "a request without the secret was served";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("requires the group's secret"), std::string::npos)
        << e.what();
  }
  {
    int fd = raw_connect(server.port());
    const std::string key = "raw";
    uint8_t hdr[13] = {4};  // HAS "raw" without AUTH
    const uint32_t klen = static_cast<uint32_t>(key.size());
    std::memcpy(hdr + 1, &klen, 4);
    ASSERT_EQ(::send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), 13);
    ASSERT_EQ(::send(fd, key.data(), key.size(), MSG_NOSIGNAL), 3);
    uint8_t reply[9] = {};
    ASSERT_EQ(::recv(fd, reply, sizeof(reply), MSG_WAITALL), 9);
    EXPECT_EQ(reply[0], 4);  // unauthorized
    EXPECT_TRUE(closed_by_server(fd));
    ::close(fd);
  }
  EXPECT_FALSE(server.has("intruder"));
  EXPECT_EQ(good.get_string("k", 1.0), "v");  // the good client is unaffected
}

TEST(Store, ClientConnectTimeoutNamesTheAddress) {
  int port;
  {
    StoreServer s({});  // a port that was free a moment ago and has no listener now
    port = s.port();
  }
  try {
    StoreClient c({.host = "127.0.0.1", .port = port, .connect_timeout_seconds = 0.3});
    FAIL() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
  }
}

TEST(Store, ServerCannotListenOnABusyPort) {
  StoreServer a({});
  try {
    StoreServer b({.host = "127.0.0.1", .port = a.port()});
    FAIL() << "two servers on one port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find(std::to_string(a.port())), std::string::npos) << e.what();
  }
}

TEST(Store, ClientNoticesADeadServer) {
  auto server = std::make_unique<StoreServer>(StoreServerParams{});
  StoreClient c(at(*server));
  c.set_string("a", "b");
  server.reset();
  EXPECT_THROW(c.get("a", 0.5), Error);
}

}  // namespace
}  // namespace tessera::comm
