// Helpers for the config tests: where a line is in a test's own YAML text, and running the
// parser expecting a tessera::Error.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tessera/config/topology.h"
#include "tessera/core/error.h"

namespace tessera::config::testing {

// 1-based line of the `occurrence`-th line containing `needle` (0 when absent).
inline int line_of(const std::string& text, const std::string& needle, int occurrence = 1) {
  int line = 1;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos && --occurrence == 0) {
      return line;
    }
    start = end + 1;
    ++line;
  }
  return 0;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The message of the kInvalidArgument error parsing `yaml` throws ("" and a test failure if it
// parses).
inline std::string parse_error(const std::string& yaml) {
  try {
    parse_topology(yaml, "t.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "parsed without an error:\n" << yaml;
  return "";
}

// The error names the key, starts with t.yaml:LINE: and lists the valid choices.
inline void expect_error_at(const std::string& msg, const std::string& key, int line,
                            const std::string& valid) {
  ASSERT_GT(line, 0) << "the test's needle is not in its YAML";
  EXPECT_TRUE(msg.starts_with("t.yaml:" + std::to_string(line) + ":")) << msg;
  EXPECT_TRUE(contains(msg, "key '" + key + "'")) << msg;
  EXPECT_TRUE(contains(msg, "(valid: ")) << msg;
  EXPECT_TRUE(contains(msg, valid)) << msg;
}

}  // namespace tessera::config::testing
