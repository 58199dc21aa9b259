// Rendezvous: a small TCP key/value store (like torch's TCPStore). The coordinator (the serve
// process of node rank 0) runs a StoreServer; every worker connects a StoreClient to it to
// register, to wait for the others, and to exchange what its communicators need to connect
// (Gloo pair addresses, the NCCL unique id). Values are opaque bytes.
//
// Ownership: StoreServer owns its listening socket and one thread; it stops in its destructor.
// StoreClient owns one connection and is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessera::comm {

struct StoreServerParams {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (see port())
  // Non-empty: every connection must first present this secret (AUTH); one that does not, or
  // presents another, is answered "unauthorized", logged and closed.
  std::string secret;
};

class StoreServer {
 public:
  // Throws tessera::Error(kUnavailable) naming host:port when it cannot listen.
  explicit StoreServer(const StoreServerParams& p);
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;
  int port() const;
  // Reads a key directly (the coordinator's own view); nullopt-like empty when absent.
  bool has(const std::string& key) const;
  std::vector<uint8_t> value(const std::string& key) const;  // throws kNotFound when absent
  void set(const std::string& key, const std::vector<uint8_t>& value);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct StoreClientParams {
  std::string host = "127.0.0.1";
  int port = 0;
  double connect_timeout_seconds = 60.0;  // retries until the server listens
  std::string secret;                     // presented first when non-empty
};

class StoreClient {
 public:
  // Throws kUnavailable naming host:port when no server answers within the connect timeout, and
  // when the server refuses the secret.
  explicit StoreClient(const StoreClientParams& p);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  void set(const std::string& key, const std::vector<uint8_t>& value);
  // Waits until `key` is set; throws kDeadlineExceeded naming the key after timeout_seconds.
  std::vector<uint8_t> get(const std::string& key, double timeout_seconds);
  // Atomic counter: adds delta and returns the new value (0 start).
  int64_t add(const std::string& key, int64_t delta);
  bool has(const std::string& key);

  void set_string(const std::string& key, const std::string& value) {
    set(key, std::vector<uint8_t>(value.begin(), value.end()));
  }
  std::string get_string(const std::string& key, double timeout_seconds) {
    auto v = get(key, timeout_seconds);
    return std::string(v.begin(), v.end());
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::comm
