// Group secrets: fresh random ones differ and are 64 hex characters; the comparison accepts only
// the exact secret, whatever the presented string's length or where it differs.
#include "tessera/core/secret.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera {
namespace {

TEST(Secret, RandomSecretsAreFreshHex) {
  const std::string a = random_secret(), b = random_secret();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
}

TEST(Secret, OnlyTheExactSecretIsEqual) {
  const std::string s = random_secret();
  EXPECT_TRUE(secrets_equal(s, s));
  EXPECT_FALSE(secrets_equal(s, ""));
  EXPECT_FALSE(secrets_equal(s, s.substr(0, 63)));
  EXPECT_FALSE(secrets_equal(s, s + s));  // the secret cycled twice is not the secret
  EXPECT_FALSE(secrets_equal(s, s + "0"));
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    std::string t = s;
    t[i] = t[i] == 'a' ? 'b' : 'a';
    EXPECT_FALSE(secrets_equal(s, t)) << i;
  }
  EXPECT_TRUE(secrets_equal("", ""));
  EXPECT_FALSE(secrets_equal("", "x"));
}

}  // namespace
}  // namespace tessera
