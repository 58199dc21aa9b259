#include "tessera/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(TESSERA_HAVE_SPDLOG)
#include <spdlog/spdlog.h>
#endif

namespace tessera {
namespace {

// Through spdlog where it is built in, so progress lines carry the same prefix as every other
// log line; the engine-only build's fallback macros cannot format, so write the line directly.
void log_line(const std::string& s) {
#if defined(TESSERA_HAVE_SPDLOG)
  spdlog::info("{}", s);
#else
  std::fprintf(stderr, "[info] %s\n", s.c_str());
#endif
}

std::string fmt_double(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string format_duration(double s) {
  if (s < 60) return fmt_double("%.0fs", std::ceil(s));
  const auto total = static_cast<long>(std::ceil(s));
  char buf[32];
  if (total < 3600)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", total / 60, total % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  return buf;
}

}  // namespace

ProgressStyle progress_style_for_stderr() {
  if (const char* e = std::getenv("TESSERA_PROGRESS"); e && *e) {
    if (std::strcmp(e, "bar") == 0) return ProgressStyle::kBar;
    if (std::strcmp(e, "off") == 0) return ProgressStyle::kOff;
    return ProgressStyle::kLines;
  }
  return ::isatty(STDERR_FILENO) ? ProgressStyle::kBar : ProgressStyle::kLines;
}

std::string format_amount(uint64_t n, ProgressUnit unit) {
  if (unit == ProgressUnit::kItems) return std::to_string(n);
  const double v = static_cast<double>(n);
  if (v < 1e3) return std::to_string(n) + " B";
  if (v < 1e6) return fmt_double("%.1f kB", v / 1e3);
  if (v < 1e9) return fmt_double("%.1f MB", v / 1e6);
  return fmt_double("%.2f GB", v / 1e9);
}

std::string format_progress(std::string_view what, uint64_t done, uint64_t total,
                            ProgressUnit unit, double elapsed_s, int bar_width, bool finished) {
  std::string s(what);
  const bool known = total > 0;
  const double frac = known ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total))
                            : 0.0;
  if (bar_width > 0 && known) {
    const int filled = static_cast<int>(frac * bar_width);
    s += "  [" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(bar_width - filled), '-') + "]";
  }
  if (known) s += fmt_double("  %3.0f%%", 100.0 * frac);
  s += "  " + format_amount(done, unit);
  if (known) s += "/" + format_amount(total, unit);
  if (elapsed_s > 0 && done > 0) {
    const double rate = static_cast<double>(done) / elapsed_s;
    s += "  " + (unit == ProgressUnit::kBytes ? format_amount(static_cast<uint64_t>(rate), unit)
                                              : fmt_double("%.1f", rate)) +
         "/s";
    if (known && done < total && !finished) s += "  ETA " + format_duration(static_cast<double>(total - done) / rate);
  }
  return s;
}

ProgressReporter::ProgressReporter(std::string what, uint64_t total, ProgressUnit unit,
                                   ProgressStyle style, std::chrono::milliseconds line_every)
    : what_(std::move(what)),
      total_(total),
      unit_(unit),
      style_(style),
      line_every_(line_every),
      start_(std::chrono::steady_clock::now()),
      last_emit_(start_) {}

ProgressReporter::~ProgressReporter() {
  // A reporter left unfinished by an exception still ends its bar's line, so the error message
  // that follows starts on a line of its own; it does not claim the work was done.
  std::lock_guard lock(mu_);
  if (!finished_ && drawn_ && style_ == ProgressStyle::kBar) std::fputc('\n', stderr);
  finished_ = true;
}

void ProgressReporter::update(uint64_t done, uint64_t total) {
  std::lock_guard lock(mu_);
  if (finished_ || style_ == ProgressStyle::kOff) return;
  done_ = done;
  if (total) total_ = total;
  const auto now = std::chrono::steady_clock::now();
  // A terminal is redrawn ten times a second at most; a log gets a line per interval.
  const auto every = style_ == ProgressStyle::kBar ? std::chrono::milliseconds(100) : line_every_;
  if (now - last_emit_ < every) return;
  last_emit_ = now;
  emit(false);
}

void ProgressReporter::finish() {
  std::lock_guard lock(mu_);
  if (finished_) return;
  if (style_ != ProgressStyle::kOff) emit(true);
  finished_ = true;
}

void ProgressReporter::emit(bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (style_ == ProgressStyle::kBar) {
    std::string line = format_progress(what_, done_, total_, unit_, elapsed, 24, final_line);
    if (final_line) line += fmt_double("  done in %.1fs", elapsed);
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final_line ? "\n" : "");
    std::fflush(stderr);
    drawn_ = !final_line;
    return;
  }
  std::string line = format_progress(what_, done_, total_, unit_, elapsed, 0, final_line);
  if (final_line) line += fmt_double("  done in %.1fs", elapsed);
  log_line(line);
}

}  // namespace tessera
