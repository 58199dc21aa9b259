// Grammar::parse and the pushdown automaton as a string recognizer: syntax, repetition bounds,
// UTF-8 classes, refusals (undefined rules, left recursion, size caps).
#include "tessera/grammar/grammar.h"

#include <gtest/gtest.h>

#include "tessera/core/error.h"
#include "test_util.h"

namespace tessera::grammar {
namespace {

using testing::byte_vocab;
using testing::recognize;

std::shared_ptr<const CompiledGrammar> compile(std::string_view src) {
  return std::make_shared<const CompiledGrammar>(Grammar::parse(src), byte_vocab());
}

bool full(std::string_view src, std::string_view text) {
  return recognize(compile(src), text).complete;
}

TEST(Grammar, LiteralsAlternationAndGroups) {
  auto g = compile(R"(root ::= "ab" ( "c" | "de" )  tail
                      tail ::= "!" | "")");
  EXPECT_TRUE(recognize(g, "abc").complete);
  EXPECT_TRUE(recognize(g, "abde!").complete);
  EXPECT_FALSE(recognize(g, "abd").complete);
  EXPECT_TRUE(recognize(g, "abd").prefix);
  EXPECT_FALSE(recognize(g, "abx").prefix);
}

TEST(Grammar, RepetitionOperators) {
  EXPECT_TRUE(full(R"(root ::= "a"*)", ""));
  EXPECT_TRUE(full(R"(root ::= "a"*)", "aaaa"));
  EXPECT_FALSE(full(R"(root ::= "a"+)", ""));
  EXPECT_TRUE(full(R"(root ::= "ab"+)", "ababab"));
  EXPECT_TRUE(full(R"(root ::= "a"? "b")", "b"));
  EXPECT_FALSE(full(R"(root ::= "a"? "b")", "aab"));
  for (int n = 0; n < 7; ++n) {
    bool in = n >= 2 && n <= 4;
    EXPECT_EQ(full(R"(root ::= "x"{2,4})", std::string(n, 'x')), in) << n;
    EXPECT_EQ(full(R"(root ::= "x"{3})", std::string(n, 'x')), n == 3) << n;
    EXPECT_EQ(full(R"(root ::= "x"{2,})", std::string(n, 'x')), n >= 2) << n;
  }
}

TEST(Grammar, ClassesRangesNegationAndUtf8) {
  EXPECT_TRUE(full(R"(root ::= [a-c0-9]+)", "ab09c"));
  EXPECT_FALSE(full(R"(root ::= [a-c]+)", "abd"));
  EXPECT_TRUE(full(R"(root ::= [^"\\]*)", "h\xC3\xA9llo \xE2\x82\xAC"));  // é and €
  EXPECT_FALSE(full(R"(root ::= [^"\\]*)", "a\"b"));
  EXPECT_TRUE(full(R"(root ::= [α-ω]+)", "\xCE\xB1\xCF\x89"));  // αω
  EXPECT_FALSE(full(R"(root ::= [α-ω]+)", "a"));
  EXPECT_TRUE(full(R"(root ::= .)", "\xF0\x9F\x98\x80"));  // 😀, 4 bytes
  // A character split across bytes: every proper prefix is a prefix, not complete.
  auto g = compile(R"(root ::= "é")");
  EXPECT_TRUE(recognize(g, "\xC3").prefix);
  EXPECT_FALSE(recognize(g, "\xC3").complete);
  EXPECT_FALSE(recognize(compile("root ::= .*"), "\xED\xA0\x80").prefix);  // a surrogate
  EXPECT_FALSE(recognize(compile("root ::= .*"), "\xC0\x80").prefix);      // overlong
}

TEST(Grammar, EscapesAndComments) {
  EXPECT_TRUE(full("# a comment\nroot ::= \"\\n\\t\\x41\\u00e9\" # trailing\n", "\n\tA\xC3\xA9"));
  EXPECT_TRUE(full(R"(root ::= [\]\-]+)", "]-]"));
}

TEST(Grammar, RecursionIsFineLeftRecursionIsRefused) {
  EXPECT_TRUE(full(R"g(root ::= "(" root ")" | "x")g", "((x))"));
  try {
    Grammar::parse(R"(root ::= root "a" | "b")");
    FAIL() << "left recursion accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("left recursion"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Grammar::parse(R"(root ::= ("a"?)*)"), Error);
  EXPECT_THROW(Grammar::parse(R"(root ::= a  a ::= b?  b ::= root "x")"), Error);
}

TEST(Grammar, SyntaxErrorsAndUndefinedRules) {
  auto message = [](std::string_view src) {
    try {
      Grammar::parse(src);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(R"(root ::= missing)").find("undefined rule 'missing'"), std::string::npos);
  EXPECT_NE(message(R"(start ::= "a")").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(message(R"(root ::= "a)").find("unterminated"), std::string::npos);
  EXPECT_NE(message(R"(root ::= ("a")").find("expected ')'"), std::string::npos);
  EXPECT_NE(message(R"(root ::= "a"{3,1})").find("repetition"), std::string::npos);
  EXPECT_NE(message("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
}

TEST(Grammar, OversizedGrammarsAreRefused) {
  GrammarLimits small;
  small.max_elements = 1000;
  try {
    Grammar::parse(R"(root ::= [a-z]{600} [0-9]{600})", small);
    FAIL() << "oversized grammar accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
  }
  EXPECT_THROW(Grammar::parse(R"(root ::= "a"{5000})"), Error);
  GrammarLimits tiny_source;
  tiny_source.max_source_bytes = 8;
  EXPECT_THROW(Grammar::parse(R"(root ::= "abcdef")", tiny_source), Error);
}

TEST(Grammar, LiteralHelperRoundTrips) {
  std::string text = "a\"b\\c\n\x01\xC3\xA9";
  EXPECT_TRUE(full("root ::= " + gbnf_literal(text), text));
}

}  // namespace
}  // namespace tessera::grammar
