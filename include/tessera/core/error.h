// Errors for Tessera. Recoverable failures (bad input, a corrupt file, an unsupported model) are
// thrown as tessera::Error at the edges and caught where they can be reported; broken invariants
// use TESSERA_CHECK, which aborts with context. No state is owned here.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tessera {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kCorruptFile,
  kUnsupported,
  kOutOfRange,
  kResourceExhausted,
  kInternal,
  kDeadlineExceeded,  // a peer or a collective did not answer in time
  kUnavailable,       // a peer, a listener or a group is gone
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void check_failed(const char* expr, const char* file, int line,
                               const std::string& msg);
}  // namespace detail

// Throws a tessera::Error with a message built from the arguments.
template <typename... Args>
[[noreturn]] void fail(ErrorCode code, Args&&... args) {
  throw Error(code, detail::concat(std::forward<Args>(args)...));
}

}  // namespace tessera

// Broken invariant: print the expression, place and message, then abort.
#define TESSERA_CHECK(cond, ...)                                                                 \
  do {                                                                                           \
    if (!(cond)) [[unlikely]]                                                                    \
      ::tessera::detail::check_failed(#cond, __FILE__, __LINE__,                                 \
                                      ::tessera::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
