// The rendezvous store's wire protocol: arbitrary bytes sent by a stray peer to a live
// StoreServer over TCP, after which the store must still serve a real client. One server per
// process; each input is one connection.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "tessera/comm/rendezvous.h"
#include "tessera/core/error.h"

namespace {

void send_raw(int port, const uint8_t* data, size_t size) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    size_t sent = 0;
    while (sent < size) {
      const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += size_t(n);
    }
    shutdown(fd, SHUT_WR);
    // Read what the server answers until it closes or goes quiet (a parked GET waits).
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, 20) > 0 && recv(fd, buf, sizeof buf, 0) > 0) {
    }
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static auto server = std::make_unique<comm::StoreServer>(comm::StoreServerParams{});
  static auto client = std::make_unique<comm::StoreClient>(
      comm::StoreClientParams{.port = server->port(), .connect_timeout_seconds = 5});
  static uint64_t n = 0;
  send_raw(server->port(), data, size);
  if (++n % 64 == 1) {
    // The store still answers a well-behaved client correctly.
    const std::string key = "fuzz-check-" + std::to_string(n);
    client->set_string(key, "v");
    FUZZ_CHECK(client->get_string(key, 5.0) == "v", "the store lost a value");
    FUZZ_CHECK(client->add("fuzz-counter", 1) >= 1, "the counter went backwards");
  }
  return 0;
}
