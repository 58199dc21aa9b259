#include "tessera/server/api_error.h"

namespace tessera::server {

const char* error_type_for_status(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

nlohmann::ordered_json error_json(int status, const std::string& message, const std::string& param,
                                  const std::string& code) {
  nlohmann::ordered_json e;
  e["message"] = message;
  e["type"] = error_type_for_status(status);
  e["param"] = param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param);
  e["code"] = code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code);
  return {{"error", std::move(e)}};
}

nlohmann::ordered_json error_json(const ApiError& e) {
  return error_json(e.status(), e.what(), e.param(), e.code());
}

ApiError api_error_from_engine(const Error& e, bool engine_ready) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
      return ApiError(400, e.what());
    case ErrorCode::kResourceExhausted: {
      ApiError err(429, std::string("the server is busy: ") + e.what(), "", "rate_limit_exceeded");
      err.headers.emplace_back("Retry-After", "1");
      return err;
    }
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
      // A worker group that died or stalled: the request may be retried once it is restarted.
      return ApiError(503, std::string("the engine is unavailable: ") + e.what());
    default:
      if (!engine_ready) return ApiError(503, std::string("the engine is not ready: ") + e.what());
      return ApiError(500, std::string("the engine failed: ") + e.what());
  }
}

std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace tessera::server
