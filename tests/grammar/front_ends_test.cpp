// Front ends: JSON Schema, json_object, regex and choice grammars accept exactly what they should
// (regexes against std::regex on random strings; schemas on valid and invalid documents; the
// token-level masks against the brute-force scan), and refuse what they do not support by name.
#include "tessera/grammar/front_ends.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "tessera/core/error.h"
#include "tessera/grammar/grammar.h"
#include "test_util.h"

namespace tessera::grammar {
namespace {

using json = nlohmann::ordered_json;
using testing::byte_vocab;
using testing::check_walk;
using testing::random_vocab;
using testing::recognize;

std::shared_ptr<const CompiledGrammar> compile(const std::string& gbnf) {
  return std::make_shared<const CompiledGrammar>(Grammar::parse(gbnf), byte_vocab());
}

std::string refusal(const json& schema) {
  try {
    json_schema_to_gbnf(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(RegexFrontEnd, AgreesWithStdRegexOnRandomStrings) {
  const char* patterns[] = {"a|b|cd",   "(ab)*c?",       "[a-c]{2,3}", "\\d+(\\.\\d{1,2})?",
                            "x[^ab]y",  "(a|bc)+d{0,2}", "\\w\\s\\W",  ".b.",
                            "^a(b|)c$", "[\\d_-]+",      "(?:ab|a)b",  "a{3}",
                            "a{2,}b",   "[.][*]",        "\\(\\)"};
  std::mt19937 rng(5);
  const std::string alphabet = "abcdxy0129._- *()\n";
  for (const char* p : patterns) {
    auto g = compile(regex_to_gbnf(p));
    std::regex re(p);
    for (int i = 0; i < 400; ++i) {
      std::string s;
      for (int n = std::uniform_int_distribution<int>(0, 6)(rng); n > 0; --n)
        s += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
      EXPECT_EQ(recognize(g, s).complete, std::regex_match(s, re)) << p << " on '" << s << "'";
    }
  }
}

TEST(RegexFrontEnd, RefusesWhatItCannotHonour) {
  for (const char* p : {"(?=a)b", "a\\1", "\\bword", "a*+", "(a", "[b", "a**", "x^y"})
    EXPECT_THROW(regex_to_gbnf(p), Error) << p;
}

TEST(ChoiceFrontEnd, ExactlyOneChoice) {
  std::vector<std::string> choices = {"yes", "no", "maybe \"so\""};
  auto g = compile(choice_to_gbnf(choices));
  EXPECT_TRUE(recognize(g, "yes").complete);
  EXPECT_TRUE(recognize(g, "maybe \"so\"").complete);
  EXPECT_FALSE(recognize(g, "yesno").prefix);
  EXPECT_THROW(choice_to_gbnf(std::vector<std::string>{}), Error);
}

const json kPersonSchema = json::parse(R"({
  "$defs": {"pet": {"type": "object", "properties": {
      "kind": {"enum": ["cat", "dog"]}, "age": {"type": "integer"}},
      "required": ["kind"], "additionalProperties": false}},
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 8},
    "score": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}},
    "id": {"type": "string", "pattern": "^[A-Z]{2}\\d{3}$"},
    "alive": {"type": ["boolean", "null"]},
    "v": {"const": 2}
  },
  "required": ["name", "tags", "v"],
  "additionalProperties": false
})");

TEST(JsonSchemaFrontEnd, ValidAndInvalidDocuments) {
  auto g = compile(json_schema_to_gbnf(kPersonSchema));
  for (const char* ok : {
           R"({"name":"Al","tags":["x"],"v":2})",
           R"({"name": "Al", "score": -1.5e3, "tags": ["a","b","c"], "v": 2})",
           "{\n  \"name\": \"\\u00e9t\\\"\",\n  \"tags\": [\"\"],\n  \"pets\": [{\"kind\": "
           "\"cat\", \"age\": 3}],\n  \"v\": 2\n}",
           R"({"name":"Al","tags":["x"],"id":"AB123","alive":null,"v":2})",
       }) {
    EXPECT_TRUE(recognize(g, ok).complete) << ok;
    EXPECT_TRUE(json::accept(ok)) << ok;
  }
  for (const char* bad : {
           R"({"tags":["x"],"name":"Al","v":2})",                          // schema order
           R"({"name":"","tags":["x"],"v":2})",                            // minLength
           R"({"name":"123456789","tags":["x"],"v":2})",                   // maxLength
           R"({"name":"Al","tags":[],"v":2})",                             // minItems
           R"({"name":"Al","tags":["a","b","c","d"],"v":2})",              // maxItems
           R"({"name":"Al","tags":["x"],"pets":[{"kind":"cow"}],"v":2})",  // enum
           R"({"name":"Al","tags":["x"],"id":"A1234","v":2})",             // pattern
           R"({"name":"Al","tags":["x"],"v":3})",                          // const
           R"({"name":"Al","tags":["x"],"v":2,"extra":1})",                // additionalProperties
           R"({"name":"Al","tags":["x"],"v":2}  )",                        // trailing junk
           R"({"name":"Al",          "tags":["x"],"v":2})",                // unbounded whitespace
       })
    EXPECT_FALSE(recognize(g, bad).complete) << bad;
}

TEST(JsonSchemaFrontEnd, RecursiveRefs) {
  json tree = json::parse(R"({"$defs": {"node": {"type": "object",
      "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"]}}, "$ref": "#/$defs/node"})");
  auto g = compile(json_schema_to_gbnf(tree));
  EXPECT_TRUE(recognize(g, R"({"v":1,"kids":[{"v":2,"kids":[{"v":3}]},{"v":4}]})").complete);
  EXPECT_FALSE(recognize(g, R"({"v":1,"kids":[{"kids":[]}]})").complete);
}

TEST(JsonSchemaFrontEnd, JsonObjectAcceptsAnyObjectOnly) {
  auto g = compile(json_object_gbnf());
  EXPECT_TRUE(recognize(g, R"({"a":[1,2.5,{"b":null}],"c":"\u1234","d":true})").complete);
  EXPECT_TRUE(recognize(g, "{}").complete);
  EXPECT_FALSE(recognize(g, "[1]").prefix);
  EXPECT_FALSE(recognize(g, R"({"a":01})").complete);
}

TEST(JsonSchemaFrontEnd, UnsupportedKeywordsAreRefusedByName) {
  for (const char* kw :
       {"minimum", "format", "oneOf", "patternProperties", "not", "if", "uniqueItems"}) {
    json s = {{"type", "object"}, {"properties", {{"x", {{"type", "integer"}, {kw, 1}}}}}};
    std::string m = refusal(s);
    EXPECT_NE(m.find(std::string("'") + kw + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("/properties/x"), std::string::npos) << m;
  }
  EXPECT_NE(refusal(json::parse(R"({"$ref": "#/$defs/nope"})")).find("'$ref'"), std::string::npos);
  EXPECT_NE(refusal(json::parse(R"j({"type": "string", "pattern": "(?=x)"})j")).find("'pattern'"),
            std::string::npos);
  EXPECT_NE(refusal(json::parse(R"({"type": "array", "maxItems": 100000})")).find("'maxItems'"),
            std::string::npos);
  EXPECT_NE(refusal(json::parse(R"({"type": "tuple"})")).find("'type'"), std::string::npos);
}

TEST(JsonSchemaFrontEnd, MasksMatchBruteForceOnSchemaGrammars) {
  std::mt19937 rng(11);
  const json schemas[] = {
      kPersonSchema,
      json::parse(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"},
                     "c":{"anyOf":[{"type":"string","maxLength":3},{"type":"null"}]}},"required":["b"]})"),
      json::parse(R"({"type":"array","items":{"enum":["x","y",1]},"maxItems":4})"),
  };
  for (const json& s : schemas) {
    std::string gbnf = json_schema_to_gbnf(s);
    auto vocab = random_vocab(rng, "{}[]\",: \n-0123.eatrulnxyAB\\\xC3\xA9", 300, 5);
    for (int i = 0; i < 6; ++i) {
      check_walk(rng, gbnf, vocab, 30);
      if (HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace tessera::grammar
