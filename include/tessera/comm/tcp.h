// Plain TCP sockets for the control plane: the rendezvous store, the engine's control port and
// the ranks that dial them. One implementation of resolve/connect/listen (getaddrinfo, IPv4 or
// IPv6, close-on-exec, TCP_NODELAY on connections: control frames are small and latency-bound).
// Returns raw descriptors; the caller owns and closes them. Holds no state.
#pragma once

#include <string>
#include <utility>

namespace tessera::comm::tcp {

// Connects to host:port; -1 with the reason in `why` when that fails (callers that retry).
int try_connect(const std::string& host, int port, std::string& why);
// Connects or throws kUnavailable naming `what` (e.g. "the engine") and the address.
int connect(const std::string& host, int port, const std::string& what);
// "host:port" -> {host, port}; throws kInvalidArgument naming `what` for anything else.
std::pair<std::string, int> split_host_port(const std::string& hostport, const std::string& what);
// Listens on host:port (port 0: any free port; `port` is set to the bound one), SO_REUSEADDR,
// backlog 128; throws kUnavailable naming `what`.
int listen(const std::string& host, int& port, const std::string& what);

}  // namespace tessera::comm::tcp
