// Internal to the config module: the defensive layer between an operator's YAML text and the
// schema in topology.cpp. It bounds what yaml-cpp is asked to parse (size, nesting), turns every
// yaml-cpp exception into a tessera::Error with FILE:LINE:COL, rejects duplicate and non-scalar
// keys (yaml-cpp keeps both copies of a duplicate silently), bounds the walk over alias-shared
// nodes, and reads typed scalars strictly. Stateless apart from the Ctx a parse passes around.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "tessera/config/topology.h"
#include "tessera/core/error.h"

namespace tessera::config::detail {

using tessera::detail::concat;  // this namespace hides tessera::detail inside the module

inline constexpr size_t kMaxConfigBytes = size_t{1} << 20;  // a topology is a page, not a MiB
inline constexpr int kMaxDepth = 64;                        // maps/sequences inside each other
inline constexpr long kMaxNodesVisited = 100000;            // after alias expansion (alias bombs)

// Formats and throws "SOURCE:LINE:COL: key 'KEY': PROBLEM (valid: VALID)" (kInvalidArgument).
// An unknown position (line 0) drops LINE:COL; an empty `valid` drops the parenthesis.
[[noreturn]] void fail_at(const std::string& source, SourcePos pos, std::string_view key,
                          std::string_view problem, std::string_view valid = {});

SourcePos pos_of(const YAML::Node& node);

// Size and nesting bounds checked on the raw text, before yaml-cpp sees it.
void prescan(std::string_view text, const std::string& source);
// yaml-cpp parse of the first document; YAML::Exception becomes tessera::Error with its mark.
YAML::Node parse_yaml(std::string_view text, const std::string& source);
// Walks the whole tree once: duplicate keys (error at the second), non-scalar keys, depth over
// kMaxDepth, more than kMaxNodesVisited nodes (aliases are walked as often as they are used).
void check_tree(const YAML::Node& root, const std::string& source);

// One key's value with its dotted path and the position of the key (a null value's own mark
// points at the next token, so messages use the key's).
struct Field {
  const std::string& source;
  std::string key;
  SourcePos pos;
  YAML::Node value;
};

// Calls `fn` for each key of `map` (in file order) after checking the key is one of `allowed`;
// an unknown key fails naming it and listing `allowed`. A null `map` (`scheduler:` with nothing
// under it) has no keys. `prefix` is "" at the top level, "scheduler." inside a section.
void for_each_key(const std::string& source, const YAML::Node& map, std::string_view section,
                  SourcePos section_pos, std::string_view prefix,
                  std::initializer_list<std::string_view> allowed,
                  const std::function<void(const Field&)>& fn);

// Strict scalar readers: a quoted "8" is a string, not an int; no hex, no "1e3" for ints.
long long read_int(const Field& f, long long lo, long long hi, std::string_view valid = {});
double read_positive_seconds(const Field& f, double hi);
bool read_bool(const Field& f);
std::string read_string(const Field& f, bool allow_empty, std::string_view valid = {});
std::string read_enum(const Field& f, std::initializer_list<std::string_view> choices);
// A sequence node (`[...]` or block "- "); fails with "expected a list" otherwise.
void expect_sequence(const Field& f, std::string_view valid);
std::string describe(const YAML::Node& node);  // "a map", "the string \"x\"", ... for messages

}  // namespace tessera::config::detail
