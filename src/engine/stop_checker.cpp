#include "tessera/engine/stop_checker.h"

#include <algorithm>

namespace tessera::engine {
namespace {
bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }
}  // namespace

StopChecker::StopChecker(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

StopChecker::Delta StopChecker::push(const std::string& piece) {
  Delta d;
  if (done_) return d;
  text_ += piece;
  // Earliest complete match that could involve the new text.
  size_t longest = 0;
  for (const auto& s : stops_) longest = std::max(longest, s.size());
  const size_t from = sent_ > longest ? sent_ - longest : 0;
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const auto& s : stops_) {
    const size_t p = text_.find(s, from);
    if (p != std::string::npos && p + s.size() > sent_ && (p < best)) {
      best = p;
      best_stop = &s;
    }
  }
  if (best_stop) {
    const size_t end = include_stop_ ? best + best_stop->size() : best;
    if (end > sent_) d.text = text_.substr(sent_, end - sent_);
    sent_ = std::max(sent_, end);
    d.matched = *best_stop;
    done_ = true;
    return d;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k)
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  size_t safe = text_.size() - hold;
  while (safe > sent_ && safe < text_.size() && is_continuation(text_[safe])) --safe;
  if (safe > sent_) {
    d.text = text_.substr(sent_, safe - sent_);
    sent_ = safe;
  }
  return d;
}

std::string StopChecker::flush() {
  if (done_) return {};
  done_ = true;
  std::string rest = text_.substr(sent_);
  sent_ = text_.size();
  return rest;
}

}  // namespace tessera::engine
