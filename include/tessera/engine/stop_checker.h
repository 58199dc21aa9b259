// StopChecker: turns a request's stream of detokenized pieces into safe-to-send text deltas while
// watching for stop strings across token boundaries. Text that might be the start of a stop string
// is held back until it is known not to be. Owned by one request's state on the engine thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tessera::engine {

class StopChecker {
 public:
  StopChecker(std::vector<std::string> stops, bool include_stop);
  struct Delta {
    std::string text;                    // new text to send
    std::optional<std::string> matched;  // set when a stop string matched: the request ends
  };
  // Adds newly decoded text. After a match, further calls return nothing.
  Delta push(const std::string& piece);
  // End of generation: everything still held back.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  std::string text_;
  size_t sent_ = 0;
  bool done_ = false;
};

}  // namespace tessera::engine
