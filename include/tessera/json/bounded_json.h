// Bounded JSON parsing (json module): every JSON document that comes from outside the process
// (request bodies, gRPC tool schemas, model files, tokenizer.json) is parsed here, so that no
// document can exhaust the stack, the CPU or memory. Pure functions; no state is kept.
//
// Why not nlohmann::json::parse: a document nested 30,000 deep parses fine but every later
// recursive walk (copy, conversion to template values) overflows the stack; and ordered_json
// looks up each new key linearly, so an object of n keys costs O(n^2) to build. Here the parser
// stops at the first limit it crosses (in time linear in the bytes read), and objects are built
// with a hash index so duplicate keys (last one wins, as in Python) cost O(1) each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <type_traits>

namespace tessera::json {

struct JsonLimits {
  int max_depth = 64;                          // arrays/objects open at once
  size_t max_values = size_t(1) << 20;         // values of any kind in the document
  size_t max_object_keys = size_t(4096);       // a request's largest object (logit_bias, a schema)
  size_t max_string_bytes = size_t(16) << 20;  // one string or key
};

// Limits for documents a client sends (HTTP bodies, gRPC JSON fields).
inline constexpr JsonLimits kRequestLimits{};
// Limits for model files we load (tokenizer.json holds ~262k vocab keys and ~515k merges).
inline constexpr JsonLimits kModelFileLimits{.max_depth = 64,
                                             .max_values = size_t(1) << 24,
                                             .max_object_keys = size_t(1) << 22,
                                             .max_string_bytes = size_t(16) << 20};

// Parses `text` as one JSON document within `limits`. Throws tessera::Error(kInvalidArgument)
// naming the document and the problem: "<what> exceeds a limit: it has nesting deeper than 64
// levels", "<what> is not valid JSON at byte 12: ...". `what`: "the request body", a path.
nlohmann::ordered_json parse_ordered(std::string_view text, const JsonLimits& limits,
                                     std::string_view what = "JSON");
// The same with sorted (std::map) objects, for documents read by key only.
nlohmann::json parse(std::string_view text, const JsonLimits& limits,
                     std::string_view what = "JSON");

// The value of `v` as an integer of type T, or nullopt when v is not an integer or does not fit
// T. nlohmann's get<int>() converts 1e300 or 2^40 by a plain cast, which is undefined behaviour,
// so every integer read from an outside document goes through here.
template <typename T, typename Json>
std::optional<T> integer_as(const Json& v) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.template get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (!v.is_number_integer()) return std::nullopt;
  const int64_t i = v.template get<int64_t>();
  if (i < 0 ? (!std::is_signed_v<T> || i < static_cast<int64_t>(std::numeric_limits<T>::min()))
            : static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
    return std::nullopt;
  return static_cast<T>(i);
}

}  // namespace tessera::json
