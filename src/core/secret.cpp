#include "tessera/core/secret.h"

#include <cstdio>
#include <random>

#include "tessera/core/sha256.h"

namespace tessera {

std::string random_secret() {
  std::random_device rd;  // /dev/urandom on Linux
  std::string s;
  for (int i = 0; i < 8; ++i) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rd()));
    s += buf;
  }
  return s;
}

bool secrets_equal(std::string_view a, std::string_view b) {
  auto bytes = [](std::string_view s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  const std::string x = sha256_hex(bytes(a)), y = sha256_hex(bytes(b));
  unsigned diff = 0;
  for (size_t i = 0; i < x.size(); ++i) diff |= static_cast<unsigned>(x[i] ^ y[i]);
  return diff == 0;
}

}  // namespace tessera
