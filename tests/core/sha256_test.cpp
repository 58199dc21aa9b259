#include "tessera/core/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera {
namespace {

std::string hex_of(const std::string& s) {
  return sha256_hex({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(Sha256, KnownVectors) {  // FIPS 180-4 examples
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingEqualsOneShot) {
  std::string s(1234, 'x');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 31 + 7);
  for (size_t cut : {0u, 1u, 63u, 64u, 65u, 500u}) {
    Sha256 h;
    h.update({reinterpret_cast<const uint8_t*>(s.data()), cut});
    h.update({reinterpret_cast<const uint8_t*>(s.data()) + cut, s.size() - cut});
    auto d = h.finish();
    std::string hex;
    for (uint8_t b : d) {
      static const char* k = "0123456789abcdef";
      hex += k[b >> 4];
      hex += k[b & 15];
    }
    EXPECT_EQ(hex, hex_of(s));
  }
}

}  // namespace
}  // namespace tessera
