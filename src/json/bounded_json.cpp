// Bounded JSON parsing: a SAX handler that builds the document itself, checking the limits as
// it goes (see bounded_json.h for why).
#include "tessera/json/bounded_json.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.h"

namespace tessera::json {
namespace {

template <typename Json>
class BoundedBuilder {
 public:
  using number_integer_t = typename Json::number_integer_t;
  using number_unsigned_t = typename Json::number_unsigned_t;
  using number_float_t = typename Json::number_float_t;
  using string_t = typename Json::string_t;
  using binary_t = typename Json::binary_t;

  BoundedBuilder(Json& root, const JsonLimits& limits) : root_(root), limits_(limits) {}

  bool null() { return add(Json(nullptr)); }
  bool boolean(bool v) { return add(Json(v)); }
  bool number_integer(number_integer_t v) { return add(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return add(Json(v)); }
  bool number_float(number_float_t v, const string_t&) { return add(Json(v)); }
  bool string(string_t& v) {
    if (v.size() > limits_.max_string_bytes) {
      return stop("a string longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    }
    return add(Json(std::move(v)));
  }
  bool binary(binary_t&) { return stop("binary values"); }

  bool start_object(std::size_t) { return open(Json::object()); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(string_t& k) {
    if (k.size() > limits_.max_string_bytes) {
      return stop("a key longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    }
    pending_key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // nlohmann's message reads "[json.exception.parse_error.101] parse error at line 1, ...".
    std::string msg = e.what();
    if (const auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    error_ = "is not valid JSON at byte " + std::to_string(position) + ": " + msg;
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  struct Open {
    Json* value;
    // Key -> index in the object, built once an object grows past a few keys, so a duplicate
    // key is found in O(1) and not by a linear scan per insert.
    std::unordered_map<std::string, size_t> index;
    std::string name;  // ".key" or "[i]" under its parent, for messages
  };

  // Where the parser is, as a path ("logit_bias", "messages[0].x[0]"), at most a few levels.
  std::string path() const {
    std::string p;
    const size_t shown = std::min<size_t>(stack_.size(), 6);
    for (size_t i = 0; i < shown; ++i) p += stack_[i].name;
    if (shown < stack_.size()) p += "...";
    if (!p.empty() && p[0] == '.') p.erase(0, 1);
    return p;
  }

  std::string child_name() const {
    if (stack_.empty()) return "";
    const Json& top = *stack_.back().value;
    if (top.is_array()) return "[" + std::to_string(top.size()) + "]";
    return "." + pending_key_;
  }

  bool count() {
    if (++values_ > limits_.max_values) {
      return stop("more than " + std::to_string(limits_.max_values) + " values");
    }
    return true;
  }

  // Places v in the open container (or as the root); returns its address (stable while it is
  // the container being filled: its parent only grows after it is closed).
  Json* place(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Open& top = stack_.back();
    if (top.value->is_array()) {
      auto& arr = top.value->template get_ref<typename Json::array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    auto& obj = top.value->template get_ref<typename Json::object_t&>();
    if constexpr (std::is_same_v<Json, nlohmann::ordered_json>) {
      // ordered_map's own emplace/operator[] find keys by a linear scan (O(n^2) for n keys);
      // keep a hash index instead once an object has a few keys.
      constexpr size_t kIndexFrom = 8;
      if (obj.size() >= kIndexFrom && top.index.empty()) {
        for (size_t i = 0; i < obj.size(); ++i) top.index.emplace(obj.begin()[i].first, i);
      }
      size_t found = obj.size();
      if (!top.index.empty()) {
        if (auto it = top.index.find(pending_key_); it != top.index.end()) found = it->second;
      } else {
        for (size_t i = 0; i < obj.size(); ++i) {
          if (obj.begin()[i].first == pending_key_) found = i;
        }
      }
      if (found < obj.size()) {  // duplicate key: the last one wins, as in Python's json
        obj.begin()[found].second = std::move(v);
        return &obj.begin()[found].second;
      }
      if (obj.size() >= limits_.max_object_keys) return nullptr;
      if (!top.index.empty()) top.index.emplace(pending_key_, obj.size());
      obj.Container::emplace_back(std::move(pending_key_), std::move(v));
      return &obj.back().second;
    } else {
      auto it = obj.find(pending_key_);
      if (it != obj.end()) {
        it->second = std::move(v);
        return &it->second;
      }
      if (obj.size() >= limits_.max_object_keys) return nullptr;
      return &obj.emplace(std::move(pending_key_), std::move(v)).first->second;
    }
  }

  bool add(Json&& v) {
    if (!count()) return false;
    if (!place(std::move(v))) return keys_error();
    return true;
  }

  bool open(Json&& v) {
    if (!count()) return false;
    if (int(stack_.size()) >= limits_.max_depth) {
      return stop("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    std::string name = child_name();
    Json* slot = place(std::move(v));
    if (!slot) return keys_error();
    stack_.push_back(Open{slot, {}, std::move(name)});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  bool keys_error() {
    return stop("an object with more than " + std::to_string(limits_.max_object_keys) + " keys");
  }

  bool stop(const std::string& what) {
    const std::string where = path();
    error_ = "exceeds a limit: it has " + what + (where.empty() ? "" : " (at " + where + ")");
    return false;
  }

  Json& root_;
  const JsonLimits& limits_;
  std::vector<Open> stack_;
  std::string pending_key_;
  size_t values_ = 0;
  std::string error_;
};

template <typename Json>
Json parse_impl(std::string_view text, const JsonLimits& limits, std::string_view what) {
  Json root;
  BoundedBuilder<Json> builder(root, limits);
  const bool ok = Json::sax_parse(text.begin(), text.end(), &builder,
                                  nlohmann::detail::input_format_t::json, /*strict=*/true);
  if (!ok) {
    fail(ErrorCode::kInvalidArgument, what, " ",
         builder.error().empty() ? std::string("is not valid JSON") : builder.error());
  }
  return root;
}

}  // namespace

nlohmann::ordered_json parse_ordered(std::string_view text, const JsonLimits& limits,
                                     std::string_view what) {
  return parse_impl<nlohmann::ordered_json>(text, limits, what);
}

nlohmann::json parse(std::string_view text, const JsonLimits& limits, std::string_view what) {
  return parse_impl<nlohmann::json>(text, limits, what);
}

}  // namespace tessera::json
