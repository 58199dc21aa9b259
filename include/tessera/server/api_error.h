// API errors of the HTTP front end (internal to the server module): an ApiError carries the HTTP
// status and the OpenAI error object fields; handlers throw it and the session turns it into a
// response. Value type; no state.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.h"

namespace tessera::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // Extra response headers (e.g. Retry-After on 429).
  std::vector<std::pair<std::string, std::string>> headers;

 private:
  int status_;
  std::string param_;
  std::string code_;
};

[[noreturn]] inline void bad_request(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

// {"error": {"message", "type", "param", "code"}}; param/code are null when empty.
nlohmann::ordered_json error_json(int status, const std::string& message,
                                  const std::string& param = "", const std::string& code = "");
nlohmann::ordered_json error_json(const ApiError& e);
const char* error_type_for_status(int status);

// Maps an Error thrown by engine.submit() to an ApiError (400 / 429 / 500 / 503).
ApiError api_error_from_engine(const Error& e, bool engine_ready);

// Serializes JSON for the wire: never throws on invalid UTF-8 (token pieces may be partial).
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace tessera::server
