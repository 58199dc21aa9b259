// Matcher against a brute-force reference: on random grammars and random vocabularies (tokens
// that split UTF-8 characters and span several terminals), every step's mask must equal a scan
// that feeds the whole history plus each token's bytes through the automaton from scratch; with
// accepts, rejects, rollbacks and EOS exactly when complete.
#include "tessera/grammar/matcher.h"

#include <gtest/gtest.h>

#include <random>

#include "tessera/core/error.h"
#include "test_util.h"

namespace tessera::grammar {
namespace {

using testing::check_walk;
using testing::random_vocab;

// A random grammar over a few terminals; some are left-recursive and refused (callers skip them).
class RandomGrammar {
 public:
  explicit RandomGrammar(std::mt19937& rng) : rng_(rng) {}
  std::string make(int rules) {
    std::string out;
    for (int r = 0; r < rules; ++r)
      out += (r == 0 ? std::string("root") : "r" + std::to_string(r)) + " ::= " + alts(rules, 0) +
             "\n";
    return out;
  }

 private:
  std::mt19937& rng_;
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::string alts(int rules, int depth) {
    std::string s = seq(rules, depth);
    for (int n = pick(3); n > 0; --n) s += " | " + seq(rules, depth);
    return s;
  }
  std::string seq(int rules, int depth) {
    std::string s;
    for (int n = 1 + pick(3); n > 0; --n) s += " " + atom(rules, depth);
    return s;
  }
  std::string atom(int rules, int depth) {
    static const char* terms[] = {R"("a")", R"("b")", R"("ab")", R"("é")", "[a-b]",
                                  "[^a]",   ".",      R"("c")",  R"("")"};
    std::string a;
    int k = pick(depth < 2 ? 12 : 9);
    if (k < 9)
      a = terms[k];
    else if (k == 9 && rules > 1)
      a = "r" + std::to_string(1 + pick(rules - 1));
    else
      a = "(" + alts(rules, depth + 1) + ")";
    static const char* post[] = {"", "", "", "*", "+", "?", "{1,3}", "{2}", "{0,2}"};
    return a + post[pick(9)];
  }
};

TEST(Matcher, RandomGrammarsMatchBruteForce) {
  std::mt19937 rng(1234);
  int checked = 0;
  for (int i = 0; i < 600 && checked < 120; ++i) {
    std::string src = RandomGrammar(rng).make(1 + i % 4);
    try {
      Grammar::parse(src);
    } catch (const Error&) {
      continue;  // left-recursive: refusal is tested elsewhere
    }
    auto vocab = random_vocab(rng, "abc\xC3\xA9", 60, 4);
    check_walk(rng, src, vocab, 25);
    if (HasFatalFailure()) return;
    ++checked;
  }
  EXPECT_GE(checked, 100);
}

TEST(Matcher, TokensSpanningTerminalsAndNestedRules) {
  std::mt19937 rng(7);
  const std::string src = R"(root ::= "{" ws item ("," ws item)* ws "}"
    item ::= "\"" [a-z]{1,5} "\"" ws ":" ws num
    num ::= "-"? [0-9]+
    ws ::= [ ]{0,2})";
  auto vocab = random_vocab(rng, "{}\",: -0123abz", 400, 6);
  for (int i = 0; i < 10; ++i) check_walk(rng, src, vocab, 40);
}

TEST(Matcher, EosOnlyWhenCompleteAndOnlyEosAfterTheEnd) {
  std::vector<std::string> toks = {"a", "b", "ab", ""};
  auto vocab = std::make_shared<const Vocabulary>(toks, std::vector<int32_t>{3});
  auto g = std::make_shared<const CompiledGrammar>(Grammar::parse(R"(root ::= "a" "b"?)"), vocab);
  Matcher m(g);
  std::vector<uint64_t> mask(1);
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0b0101u);  // "a", "ab"; not EOS
  ASSERT_TRUE(m.accept(0));
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0b1010u);  // "b" or EOS
  EXPECT_FALSE(m.only_eos_left());
  ASSERT_TRUE(m.accept(1));
  EXPECT_TRUE(m.only_eos_left());
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0b1000u);
  ASSERT_TRUE(m.accept(3));
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0u);  // nothing after EOS
  EXPECT_FALSE(m.accept(0));
  EXPECT_FALSE(m.accept(3));
  m.rollback(3);
  EXPECT_EQ(m.num_accepted(), 0u);
  EXPECT_THROW(m.rollback(1), Error);
}

TEST(Matcher, PartialUtf8TokensAreAllowedMidCharacter) {
  // "€" is E2 82 AC; tokens that split it must be allowed in order, and a token that mixes the
  // tail of € with a following ASCII byte too.
  std::vector<std::string> toks = {"\xE2", "\x82", "\xAC", "\xE2\x82", "\xAC!", "!", "x", ""};
  auto vocab = std::make_shared<const Vocabulary>(toks, std::vector<int32_t>{7});
  auto g =
      std::make_shared<const CompiledGrammar>(Grammar::parse(R"(root ::= [^a-z]+ "!")"), vocab);
  Matcher m(g);
  std::vector<uint64_t> mask(1);
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0b101001u);  // E2, E2 82, "!"
  ASSERT_TRUE(m.accept(3));
  m.fill_mask(mask);
  EXPECT_EQ(mask[0], 0b010110u);  // 82 (E2 82 82 is ₂), AC, AC!
  ASSERT_TRUE(m.accept(4));
  EXPECT_TRUE(m.is_complete());
}

TEST(Matcher, AmbiguityCapIsAnError) {
  MatcherLimits limits;
  limits.max_stacks = 4;
  std::vector<std::string> toks = {"a", ""};
  auto vocab = std::make_shared<const Vocabulary>(toks, std::vector<int32_t>{1});
  auto g = std::make_shared<const CompiledGrammar>(
      Grammar::parse(R"(root ::= ("a" | "a" "a" | "a" "a" "a" | [a] "a"? "a")*)"), vocab, limits);
  try {
    Matcher m(g);
    for (int i = 0; i < 4; ++i) m.accept(0);
    FAIL() << "an ambiguous grammar ran past the stack cap";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
  }
}

}  // namespace
}  // namespace tessera::grammar
