// The host implementations of ops::sample (ops/sample.h): ref ranks a row by sorting all of it,
// cpu only as far as the cut needs; everything else (the edits, the weights, the sums and their
// orders, the draw) is this one routine, so the two agree bit for bit and the CUDA kernel
// (kernels/sample.cu) shares the per-token arithmetic through sample_layout.h. No state beyond
// a call.
#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "check.h"
#include "tessera/core/error.h"
#include "tessera/kernels/sample_layout.h"
#include "tessera/ops/sample.h"

namespace tessera::ops {
namespace {

namespace lay = kernels::sample;

// The largest of x[0, n). Eight running maxima: one (or a maximum captured by reference, which
// the compiler kept in memory) made a latency chain that cost a third of an unmasked row's
// sampling. Order-free: max is exact, and a -0 / +0 tie changes no weight (l - mx is the same).
float max_of(const float* x, int32_t n) {
  constexpr int kLanes = 8;
  float m[kLanes];
  std::fill(m, m + kLanes, -std::numeric_limits<float>::infinity());
  int32_t t = 0;
  for (; t + kLanes <= n; t += kLanes)
    for (int j = 0; j < kLanes; ++j) m[j] = std::max(m[j], x[t + j]);
  for (; t < n; ++t) m[0] = std::max(m[0], x[t]);
  return *std::max_element(m, m + kLanes);
}

// f(t) for every token row allows, in id order (all of them without a mask), a mask word at a
// time: a grammar's mask allows a few hundred of ~50k tokens, so testing every bit cost more than
// the rest of the row.
template <class F>
void for_allowed(const int32_t* words, const lay::Row& row, int32_t vocab, F&& f) {
  if (row.mask_begin < 0) {
    for (int32_t t = 0; t < vocab; ++t) f(t);
    return;
  }
  const int32_t* mask = words + row.mask_begin;
  for (int32_t base = 0; base < vocab; base += 32) {
    auto bits = static_cast<uint32_t>(mask[base / 32]);
    while (bits) {
      const int32_t t = base + std::countr_zero(bits);
      if (t >= vocab) return;
      f(t);
      bits &= bits - 1;
    }
  }
}

// The packed array against what the caller says it holds, and every offset inside it: a host
// implementation reads the words, so a corrupt array fails here instead of reading out of bounds.
void check_words(std::span<const int32_t> w, const SampleMeta& m) {
  const auto bad = [](auto&&... what) {
    fail(ErrorCode::kInvalidArgument, "sample: corrupt metadata: ", what...);
  };
  const size_t rows_end = lay::kHeaderWords + static_cast<size_t>(m.rows) * lay::kRowWords;
  if (w.size() < rows_end) bad(w.size(), " words for ", m.rows, " rows");
  if (w[0] != m.rows || w[1] != m.vocab || w[2] != m.max_top || w[3] != (m.vocab + 31) / 32)
    bad("header ", w[0], " ", w[1], " ", w[2], " ", w[3]);
  for (int r = 0; r < m.rows; ++r) {
    const lay::Row row = lay::read_row(w.data(), r);
    if (row.top_logprobs < 0 || row.top_logprobs > m.max_top) bad("row ", r, " top_logprobs");
    if (row.edit_count < 0 || row.edit_begin < 0 ||
        static_cast<size_t>(row.edit_begin) + static_cast<size_t>(row.edit_count) * 4 > w.size())
      bad("row ", r, " edits");
    for (int e = 0; e < row.edit_count; ++e) {
      const int32_t t = w[static_cast<size_t>(row.edit_begin + e * lay::kEditWords)];
      if (t < 0 || t >= m.vocab) bad("row ", r, " edits token ", t);
    }
    if (row.mask_begin != -1 &&
        (row.mask_begin < 0 || static_cast<size_t>(row.mask_begin) + w[3] > w.size()))
      bad("row ", r, " mask");
    if (!(row.u >= 0.0 && row.u < 1.0)) bad("row ", r, " uniform draw");
  }
}

// A row's buffers (a vocabulary's worth each), kept per thread across calls: allocating them per
// call cost more than the sampling (fresh pages every time).
struct RowScratch {
  std::vector<uint64_t> keys;
  std::vector<int32_t> kept;  // draw(): the kept tokens in id order and their weights
  std::vector<double> kept_w;
};

class RowSampler {
 public:
  RowSampler(std::span<const int32_t> words, int vocab, bool full_sort, RowScratch& scratch)
      : w_(words.data()),
        vocab_(vocab),
        full_sort_(full_sort),
        keys_(scratch.keys),
        kept_(scratch.kept),
        kept_w_(scratch.kept_w) {}

  void run(int r, float* logits, int32_t* tokens, float* logprobs, int cols) {
    const lay::Row row = lay::read_row(w_, r);
    if (row.mask_begin >= 0) {  // everything the mask forbids to -inf, a word at a time
      const int32_t* mask = w_ + row.mask_begin;
      constexpr float kNone = -std::numeric_limits<float>::infinity();
      for (int32_t base = 0; base < vocab_; base += 32) {
        const auto bits = static_cast<uint32_t>(mask[base / 32]);
        const int32_t end = std::min(base + 32, vocab_);
        if (bits == 0) {
          std::fill(logits + base, logits + end, kNone);
        } else if (bits != ~uint32_t{0}) {
          for (int32_t t = base; t < end; ++t)
            if (!((bits >> (t - base)) & 1u)) logits[t] = kNone;
        }
      }
    }
    for (int e = 0; e < row.edit_count; ++e) {
      const int32_t* ed = w_ + row.edit_begin + e * lay::kEditWords;
      logits[ed[0]] = lay::edited(logits[ed[0]], ed, row.repetition_penalty);
    }
    const int32_t chosen = row.temperature == 0.0f ? best(logits) : draw(row, logits);
    std::fill(tokens, tokens + cols, -1);
    std::fill(logprobs, logprobs + cols, 0.0f);
    tokens[0] = chosen;
    if (!row.logprobs && row.top_logprobs == 0) return;
    const float mx = max_of(logits, vocab_);
    double sum = 0.0;
    for (int32_t t = 0; t < vocab_; ++t) sum += std::exp(static_cast<double>(logits[t] - mx));
    const double lse = static_cast<double>(mx) + std::log(sum);
    const auto lp = [&](int32_t t) { return static_cast<float>(logits[t] - lse); };
    logprobs[0] = lp(chosen);
    if (row.top_logprobs == 0) return;
    keys_.resize(static_cast<size_t>(vocab_));
    for (int32_t t = 0; t < vocab_; ++t)
      keys_[static_cast<size_t>(t)] = lay::rank_key(logits[t], t);
    const int top = std::min(row.top_logprobs, vocab_);
    rank(keys_, static_cast<size_t>(top));
    for (int j = 0; j < top; ++j) {
      tokens[1 + j] = lay::rank_id(keys_[static_cast<size_t>(j)]);
      logprobs[1 + j] = lp(tokens[1 + j]);
    }
  }

 private:
  const int32_t* w_;
  int vocab_;
  bool full_sort_;
  std::vector<uint64_t>& keys_;
  std::vector<int32_t>& kept_;
  std::vector<double>& kept_w_;

  // Puts the n best keys first, in rank order (ref: the whole row, sorted).
  void rank(std::vector<uint64_t>& keys, size_t n) const {
    if (full_sort_)
      std::sort(keys.begin(), keys.end(), std::greater<>());
    else
      std::partial_sort(keys.begin(), keys.begin() + static_cast<long>(n), keys.end(),
                        std::greater<>());
  }
  // Ranks [from, n) of keys, the first `from` already in rank order and all better than the rest.
  void rank_more(std::vector<uint64_t>& keys, size_t from, size_t n) const {
    if (full_sort_) return;  // rank() sorted everything
    std::partial_sort(keys.begin() + static_cast<long>(from), keys.begin() + static_cast<long>(n),
                      keys.end(), std::greater<>());
  }

  int32_t best(const float* logits) const {
    uint64_t k = 0;
    for (int32_t t = 0; t < vocab_; ++t) k = std::max(k, lay::rank_key(logits[t], t));
    return lay::rank_id(k);
  }

  // Step 4 of ops/sample.h.
  // Plain temperature (no top-k below the allowed count, no top-p or min-p) keeps every allowed
  // token: no ranking, no keys.
  int32_t draw(const lay::Row& row, const float* logits) {
    const bool masked = row.mask_begin >= 0;
    size_t n = 0;
    float most = -std::numeric_limits<float>::infinity();
    if (!masked) {
      n = static_cast<size_t>(vocab_);
      most = max_of(logits, vocab_);
    } else {
      for_allowed(w_, row, vocab_, [&](int32_t t) {
        ++n;
        most = std::max(most, logits[t]);
      });
    }
    const size_t k = row.top_k > 0 ? std::min<size_t>(static_cast<size_t>(row.top_k), n) : n;
    const bool truncates = row.top_p < 1.0f || row.min_p > 0.0f;
    const float mx = most, temperature = row.temperature;  // by value into the hot loops
    const auto weight = [logits, mx, temperature](int32_t t) -> double {
      return lay::weight(logits[t], mx, temperature);
    };
    uint64_t floor_key = 0;  // the kept tokens: allowed, with a rank key >= floor_key
    if (k < n || truncates) {
      auto& cand = keys_;
      cand.clear();
      for_allowed(w_, row, vocab_, [&](int32_t t) { cand.push_back(lay::rank_key(logits[t], t)); });
      size_t sorted = full_sort_ ? n : k < n ? k : std::min<size_t>(256, n);
      rank(cand, sorted);
      if (full_sort_) sorted = n;
      const uint64_t k_key = k < n ? cand[k - 1] : 0;
      const double total = kept_mass(row, logits, k_key, weight);
      size_t keep = k;
      for (;;) {
        const double best_w = weight(lay::rank_id(cand[0]));
        double cum = 0.0;
        bool decided = false;
        for (size_t i = 0; i < std::min(sorted, k); ++i) {
          const double wi = weight(lay::rank_id(cand[i]));
          if (i > 0 && row.min_p > 0.0f && !lay::min_p_keeps(wi, best_w, total, row.min_p)) {
            keep = i;  // min-p drops it and everything after
            decided = true;
            break;
          }
          cum += wi / total;
          if (row.top_p < 1.0f && cum >= row.top_p) {  // shortest prefix reaching top_p
            keep = i + 1;
            decided = true;
            break;
          }
        }
        if (decided || sorted >= k) break;
        const size_t more = std::min(k, sorted * 8);  // the cut lies further down: rank more
        rank_more(cand, sorted, more);
        sorted = more;
      }
      floor_key = cand[keep - 1];
    }
    // The kept tokens and their weights in id order, each exp taken once.
    kept_.clear();
    kept_w_.clear();
    double mass = 0.0;
    if (!masked && floor_key == 0) {  // every token: no list of ids
      kept_w_.resize(static_cast<size_t>(vocab_));
      for (int32_t t = 0; t < vocab_; ++t) mass += kept_w_[static_cast<size_t>(t)] = weight(t);
      double r = row.u * mass;
      for (int32_t t = 0; t < vocab_; ++t) {
        r -= kept_w_[static_cast<size_t>(t)];
        if (r < 0) return t;
      }
      return vocab_ - 1;  // r rounded past the end: the last token
    }
    for_allowed(w_, row, vocab_, [&](int32_t t) {
      if (floor_key != 0 && lay::rank_key(logits[t], t) < floor_key) return;
      kept_.push_back(t);
      kept_w_.push_back(weight(t));
      mass += kept_w_.back();
    });
    double r = row.u * mass;
    for (size_t i = 0; i < kept_.size(); ++i) {
      r -= kept_w_[i];
      if (r < 0) return kept_[i];
    }
    return kept_.back();  // r rounded past the end: the last kept token
  }

  // The weight of the allowed tokens ranked at or above `floor_key`, summed in token-id order.
  template <class Weight>
  double kept_mass(const lay::Row& row, const float* logits, uint64_t floor_key,
                   const Weight& weight) const {
    double s = 0.0;
    for_allowed(w_, row, vocab_, [&](int32_t t) {
      if (lay::rank_key(logits[t], t) >= floor_key) s += weight(t);
    });
    return s;
  }
};

void sample_host(const char* op, bool full_sort, Tensor& logits, const SampleMeta& meta,
                 Tensor& tokens, Tensor& logprobs) {
  detail::require_host(op, {&logits, &meta.words, &tokens, &logprobs});
  const std::span<const int32_t> words(meta.words.data_as<const int32_t>(),
                                       static_cast<size_t>(meta.words.numel()));
  check_words(words, meta);
  const int cols = meta.max_top + 1;
  thread_local RowScratch scratch;
  RowSampler s(words, meta.vocab, full_sort, scratch);
  for (int r = 0; r < meta.rows; ++r)
    s.run(r, logits.data_as<float>() + static_cast<int64_t>(r) * meta.vocab,
          tokens.data_as<int32_t>() + static_cast<int64_t>(r) * cols,
          logprobs.data_as<float>() + static_cast<int64_t>(r) * cols, cols);
}

}  // namespace

namespace ref {
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs) {
  sample_host("ref::sample", true, logits, meta, tokens, logprobs);
}
}  // namespace ref

namespace cpu {
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs) {
  sample_host("cpu::sample", false, logits, meta, tokens, logprobs);
}
}  // namespace cpu

}  // namespace tessera::ops
