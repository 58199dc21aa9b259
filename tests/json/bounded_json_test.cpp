// Bounded JSON parser: same documents as nlohmann's parser on random input, and each limit
// refused with a message that names it.
#include "tessera/json/bounded_json.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tessera/core/error.h"

namespace tessera::json {
namespace {

using nlohmann::ordered_json;

ordered_json random_value(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 5 ? 4 : 6);
  switch (kind(rng)) {
    case 0:
      return nullptr;
    case 1:
      return bool(rng() & 1);
    case 2:
      return int64_t(rng()) - int64_t(1) * (1 << 30);
    case 3:
      return double(rng()) / 7.0;
    case 4: {
      std::string s;
      const int n = int(rng() % 12);
      for (int i = 0; i < n; ++i) s += char(' ' + rng() % 90);
      if (rng() % 5 == 0) s += "\xC3\xA9\n\"\\";
      return s;
    }
    case 5: {
      ordered_json a = ordered_json::array();
      const int n = int(rng() % 6);
      for (int i = 0; i < n; ++i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      ordered_json o = ordered_json::object();
      const int n = int(rng() % 12);  // past the 8 keys where the hash index starts
      for (int i = 0; i < n; ++i)
        o["k" + std::to_string(rng() % 20)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string error_of(std::string_view text, const JsonLimits& limits = kRequestLimits) {
  try {
    parse_ordered(text, limits, "the body");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(BoundedJson, SameDocumentsAsNlohmannOnRandomInput) {
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 300; ++i) {
    const std::string text = random_value(rng, 0).dump(rng() % 2 ? 2 : -1);
    const ordered_json want = ordered_json::parse(text);
    const ordered_json got = parse_ordered(text, kRequestLimits);
    ASSERT_EQ(got, want) << text;
    ASSERT_EQ(got.dump(), want.dump()) << "key order differs for " << text;
    ASSERT_EQ(parse(text, kRequestLimits), nlohmann::json::parse(text)) << text;
  }
}

TEST(BoundedJson, DuplicateKeysLastWinsInFirstPositionLikePython) {
  // json.loads('{"a":1,"b":2,"a":3}') == {'a': 3, 'b': 2}
  EXPECT_EQ(parse_ordered(R"({"a":1,"b":2,"a":3})", kRequestLimits).dump(), R"({"a":3,"b":2})");
  std::string big = "{";
  for (int i = 0; i < 20; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  big += "\"k3\":\"again\"}";
  const ordered_json j = parse_ordered(big, kRequestLimits);
  EXPECT_EQ(j.size(), 20u);
  EXPECT_EQ(j["k3"], "again");
  EXPECT_EQ(j.begin().key(), "k0");
  EXPECT_EQ(parse(big, kRequestLimits)["k3"], "again");
}

TEST(BoundedJson, DepthLimitIsExact) {
  JsonLimits limits;
  limits.max_depth = 64;
  EXPECT_NO_THROW(parse_ordered(nested_arrays(64), limits));
  EXPECT_NE(error_of(nested_arrays(65), limits).find("nesting deeper than 64 levels"),
            std::string::npos);
  // The reproduction from issue 10: 30,000 arrays deep inside a message.
  const int d = 30000;
  const std::string deep =
      R"({"messages":[{"role":"user","content":"hi","x":)" + nested_arrays(d) + "}]}";
  const std::string e = error_of(deep);
  EXPECT_NE(e.find("the body exceeds a limit"), std::string::npos) << e;
  EXPECT_NE(e.find("nesting deeper than 64"), std::string::npos) << e;
  EXPECT_NE(e.find("(at messages[0].x[0][0]...)"), std::string::npos) << e;
  // Objects count as levels too.
  std::string objs;
  for (int i = 0; i < 100; ++i) objs += "{\"a\":";
  objs += "1" + std::string(100, '}');
  EXPECT_NE(error_of(objs).find("nesting deeper"), std::string::npos);
}

TEST(BoundedJson, ManyKeysParseAndStayInOrder) {
  // 110,000 keys: the object from issue 10 that took 18 s through ordered_json's linear lookup.
  std::string text = "{\"x\":{";
  const int n = 110000;
  for (int i = 0; i < n; ++i) {
    if (i) text += ",";
    text += "\"" + std::to_string(i) + "\":" + std::to_string(i);
  }
  text += ",\"17\":-1}}";
  // A request may not carry it (4096 keys at most)...
  EXPECT_NE(error_of(text).find("more than 4096 keys"), std::string::npos);
  // ...and with room for it, it is built in linear time with its duplicate found.
  const ordered_json j = parse_ordered(text, kModelFileLimits);
  const ordered_json& x = j["x"];
  ASSERT_EQ(x.size(), size_t(n));
  auto it = x.begin();
  for (int i = 0; i < n; ++i, ++it) {
    ASSERT_EQ(it.key(), std::to_string(i));
    ASSERT_EQ(it.value().get<int>(), i == 17 ? -1 : i);
  }
}

TEST(BoundedJson, EachLimitIsNamed) {
  JsonLimits limits;
  limits.max_object_keys = 3;
  EXPECT_NE(error_of(R"({"a":1,"b":2,"c":3,"d":4})", limits).find("more than 3 keys"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"x":[{"a":1,"b":2,"c":3,"d":4}]})", limits).find("keys (at x[0])"),
            std::string::npos);
  EXPECT_NO_THROW(parse_ordered(R"({"a":1,"b":2,"c":3,"a":4})", limits));  // a duplicate
  limits = {};
  limits.max_values = 5;
  EXPECT_NE(error_of("[1,2,3,4,5]", limits).find("more than 5 values"), std::string::npos);
  EXPECT_NO_THROW(parse_ordered("[1,2,3,4]", limits));
  limits = {};
  limits.max_string_bytes = 4;
  EXPECT_NE(error_of(R"(["abcde"])", limits).find("longer than 4 bytes"), std::string::npos);
  EXPECT_NE(error_of(R"({"abcde":1})", limits).find("key longer than 4"), std::string::npos);
}

TEST(BoundedJson, SyntaxErrorsNameTheByte) {
  const std::string e = error_of(R"({"a": [1, 2,, 3]})");
  EXPECT_NE(e.find("is not valid JSON at byte 13"), std::string::npos) << e;
  EXPECT_NE(error_of("").find("is not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("{\"a\":1} trailing").find("is not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("\"\xFF\"").find("is not valid JSON"), std::string::npos);  // invalid UTF-8
}

}  // namespace
}  // namespace tessera::json
