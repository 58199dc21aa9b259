// SampleBatch (ops/sample.h): validates each row once, on the host, and packs the step's rows into
// the word array of kernels/include/tessera/kernels/sample_layout.h.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tessera/core/error.h"
#include "tessera/kernels/sample_layout.h"
#include "tessera/ops/sample.h"

namespace tessera::ops {

namespace lay = kernels::sample;
static_assert(lay::kMaxTop == kMaxSampleTop);

SampleBatch::SampleBatch(int vocab) : vocab_(vocab) {
  if (vocab <= 0) fail(ErrorCode::kInvalidArgument, "sample: vocabulary of ", vocab, " tokens");
}

void SampleBatch::add(const SampleRow& r) {
  const auto bad = [&](auto&&... what) {
    fail(ErrorCode::kInvalidArgument, "sample row ", rows_.size(), ": ", what...);
  };
  if (!std::isfinite(r.temperature) || r.temperature < 0.0f) bad("temperature ", r.temperature);
  if (!(r.top_p > 0.0f && r.top_p <= 1.0f)) bad("top_p ", r.top_p, " outside (0, 1]");
  if (!(r.min_p >= 0.0f && r.min_p <= 1.0f)) bad("min_p ", r.min_p, " outside [0, 1]");
  if (!std::isfinite(r.repetition_penalty) || r.repetition_penalty <= 0.0f)
    bad("repetition_penalty ", r.repetition_penalty);
  if (!(r.u >= 0.0 && r.u < 1.0)) bad("uniform draw ", r.u, " outside [0, 1)");
  if (r.top_logprobs < 0 || r.top_logprobs > kMaxSampleTop)
    bad("top_logprobs ", r.top_logprobs, " outside 0..", kMaxSampleTop);
  std::vector<int32_t> toks;
  toks.reserve(r.edits.size());
  for (const LogitEdit& e : r.edits) {
    if (e.token < 0 || e.token >= vocab_)
      bad("edit of token ", e.token, " outside the vocabulary of ", vocab_);
    if (!std::isfinite(e.bias) || !std::isfinite(e.subtract)) bad("edit of token ", e.token);
    toks.push_back(e.token);
  }
  std::sort(toks.begin(), toks.end());
  if (auto d = std::adjacent_find(toks.begin(), toks.end()); d != toks.end())
    bad("two edits of token ", *d);
  if (!r.allowed.empty()) {
    if (r.allowed.size() * 64 < static_cast<size_t>(vocab_))
      bad("mask of ", r.allowed.size(), " words for ", vocab_, " tokens");
    bool any = false;
    for (int32_t t = 0; t < vocab_ && !any; ++t)
      any = (r.allowed[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1;
    if (!any) bad("a mask that allows no token");
  }
  rows_.push_back(r);
  max_top_ = std::max(max_top_, r.top_logprobs);
}

std::vector<int32_t> SampleBatch::words() const {
  const int mask_words = (vocab_ + 31) / 32;
  size_t edits = 0, masks = 0;
  for (const auto& r : rows_) {
    edits += r.edits.size();
    masks += r.allowed.empty() ? 0 : 1;
  }
  const size_t rows_end = lay::kHeaderWords + rows_.size() * lay::kRowWords;
  const size_t edits_end = rows_end + edits * lay::kEditWords;
  const size_t total = edits_end + masks * static_cast<size_t>(mask_words);
  if (total > static_cast<size_t>(INT32_MAX))
    fail(ErrorCode::kInvalidArgument, "sample: a step of ", total, " metadata words");
  std::vector<int32_t> w(total, 0);
  w[0] = rows();
  w[1] = vocab_;
  w[2] = max_top_;
  w[3] = mask_words;
  size_t edit_at = rows_end, mask_at = edits_end;
  for (size_t i = 0; i < rows_.size(); ++i) {
    const SampleRow& r = rows_[i];
    int32_t* row = w.data() + lay::kHeaderWords + i * lay::kRowWords;
    row[0] = lay::float_word(r.temperature);
    row[1] = r.top_k;
    row[2] = lay::float_word(r.top_p);
    row[3] = lay::float_word(r.min_p);
    row[4] = lay::float_word(r.repetition_penalty);
    uint64_t bits = 0;
    std::memcpy(&bits, &r.u, sizeof bits);
    row[5] = static_cast<int32_t>(static_cast<uint32_t>(bits));
    row[6] = static_cast<int32_t>(static_cast<uint32_t>(bits >> 32));
    row[7] = r.logprobs ? 1 : 0;
    row[8] = r.top_logprobs;
    row[9] = static_cast<int32_t>(edit_at);
    row[10] = static_cast<int32_t>(r.edits.size());
    row[11] = -1;
    for (const LogitEdit& e : r.edits) {
      w[edit_at] = e.token;
      w[edit_at + 1] = lay::float_word(e.bias);
      w[edit_at + 2] = e.penalise ? 1 : 0;
      w[edit_at + 3] = lay::float_word(e.subtract);
      edit_at += lay::kEditWords;
    }
    if (!r.allowed.empty()) {
      row[11] = static_cast<int32_t>(mask_at);
      for (int m = 0; m < mask_words; ++m)
        w[mask_at + static_cast<size_t>(m)] = static_cast<int32_t>(
            static_cast<uint32_t>(r.allowed[static_cast<size_t>(m) / 2] >> (32 * (m % 2))));
      mask_at += static_cast<size_t>(mask_words);
    }
  }
  return w;
}

SampleMeta SampleBatch::upload(const std::shared_ptr<Allocator>& device) const {
  const std::vector<int32_t> w = words();
  Tensor host = Tensor::empty({static_cast<int64_t>(w.size())}, DType::kI32);
  std::copy(w.begin(), w.end(), host.data_as<int32_t>());
  return {.words = to_device(host, device), .rows = rows(), .vocab = vocab_, .max_top = max_top_};
}

}  // namespace tessera::ops
