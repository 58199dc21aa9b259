#include "tessera/core/secret.h"

#include <cstdint>
#include <cstdio>
#include <random>

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

bool secrets_equal(std::string_view expected, std::string_view presented) {
  if (expected.empty()) return presented.empty();
  unsigned diff = expected.size() != presented.size() ? 1u : 0u;
  for (size_t i = 0; i < presented.size(); ++i)
    diff |= static_cast<unsigned>(static_cast<uint8_t>(presented[i]) ^
                                  static_cast<uint8_t>(expected[i % expected.size()]));
  return diff == 0;
}

}  // namespace tessera
