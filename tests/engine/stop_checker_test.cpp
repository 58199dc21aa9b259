#include "tessera/engine/stop_checker.h"

#include <gtest/gtest.h>

#include <random>

namespace tessera::engine {
namespace {

// Feeds `text` in the given pieces; returns (sent text, matched stop).
std::pair<std::string, std::string> feed(StopChecker& c, const std::vector<std::string>& pieces) {
  std::string out, matched;
  for (const auto& p : pieces) {
    auto d = c.push(p);
    out += d.text;
    if (d.matched) {
      matched = *d.matched;
      return {out, matched};
    }
  }
  return {out + c.flush(), matched};
}

TEST(StopChecker, MatchAcrossPieces) {
  StopChecker c({"END"}, false);
  auto [out, m] = feed(c, {"hello E", "N", "D world"});
  EXPECT_EQ(out, "hello ");
  EXPECT_EQ(m, "END");
}

TEST(StopChecker, HeldBackTextIsReleasedWhenNotAStop) {
  StopChecker c({"END"}, false);
  auto d1 = c.push("abc EN");
  EXPECT_EQ(d1.text, "abc ");  // "EN" might start END
  auto d2 = c.push("X");
  EXPECT_EQ(d2.text, "ENX");
  EXPECT_EQ(c.flush(), "");
}

TEST(StopChecker, IncludeStopAndEarliestOfSeveral) {
  StopChecker c({"bb", "a"}, true);
  auto [out, m] = feed(c, {"xxbba"});
  EXPECT_EQ(out, "xxbb");
  EXPECT_EQ(m, "bb");
}

TEST(StopChecker, NoStopsPassesEverything) {
  StopChecker c({}, false);
  auto [out, m] = feed(c, {"a", "b\xc3\xa9", "c"});
  EXPECT_EQ(out,
            "ab\xc3\xa9"
            "c");
  EXPECT_TRUE(m.empty());
}

TEST(StopChecker, RandomSplitsGiveSameResultAsWholeText) {
  std::mt19937 rng(std::random_device{}());
  const std::string alphabet = "ab\n";
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    for (int i = 0; i < 30; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stops{"aab", "\n\n", "bab"};
    // Expected: cut at the earliest end of any stop... i.e. earliest occurrence by start.
    size_t first = std::string::npos;
    std::string which;
    for (size_t p = 0; p < text.size() && first == std::string::npos; ++p)
      for (const auto& s : stops)
        if (text.compare(p, s.size(), s) == 0) {
          first = p;
          which = s;
          break;
        }
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      size_t n = 1 + rng() % 4;
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    StopChecker c(stops, false);
    auto [out, m] = feed(c, pieces);
    if (first == std::string::npos) {
      EXPECT_EQ(out, text);
      EXPECT_TRUE(m.empty());
    } else {
      EXPECT_EQ(out, text.substr(0, first)) << text;
      EXPECT_EQ(m, which) << text;
    }
  }
}

}  // namespace
}  // namespace tessera::engine
