#include "tessera/comm/tcp.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tessera/core/error.h"

namespace tessera::comm::tcp {
namespace {

// getaddrinfo for host:port; the caller frees the list.
addrinfo* resolve(const std::string& host, int port, bool passive, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res); rc != 0) {
    why = ::gai_strerror(rc);
    return nullptr;
  }
  return res;
}

}  // namespace

int try_connect(const std::string& host, int port, std::string& why) {
  addrinfo* res = resolve(host, port, false, why);
  if (!res) return -1;
  int fd = -1;
  for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

int connect(const std::string& host, int port, const std::string& what) {
  std::string why;
  const int fd = try_connect(host, port, why);
  if (fd < 0)
    fail(ErrorCode::kUnavailable, "cannot connect to ", what, " at ", host, ":", port, ": ", why);
  return fd;
}

std::pair<std::string, int> split_host_port(const std::string& hostport, const std::string& what) {
  const auto colon = hostport.rfind(':');
  int port = -1;
  if (colon != std::string::npos && colon + 1 < hostport.size() && colon + 6 >= hostport.size()) {
    port = 0;
    for (size_t i = colon + 1; i < hostport.size() && port >= 0; ++i)
      port = hostport[i] >= '0' && hostport[i] <= '9' ? port * 10 + (hostport[i] - '0') : -1;
  }
  if (colon == 0 || port <= 0 || port > 65535)
    fail(ErrorCode::kInvalidArgument, "bad ", what, " address '", hostport,
         "' (expected HOST:PORT)");
  return {hostport.substr(0, colon), port};
}

int listen(const std::string& host, int& port, const std::string& what) {
  std::string why = "no address";
  addrinfo* res = resolve(host, port, true, why);
  if (!res) fail(ErrorCode::kUnavailable, what, " cannot listen on ", host, ":", port, ": ", why);
  int fd = -1;
  for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) fail(ErrorCode::kUnavailable, what, " cannot listen on ", host, ":", port, ": ", why);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return fd;
}

}  // namespace tessera::comm::tcp
