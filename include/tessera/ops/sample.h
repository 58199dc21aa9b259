// The sampling op: a step's logit rows in, each row's token (and the logprobs asked for) out, on
// the logits' device, so that a GPU worker copies back a few ints per sequence instead of the
// whole vocabulary's logits. Each sequence's state (its RNG, the tokens it has seen) stays with
// its sampling::Sampler on the host, which turns it into a SampleRow per step: the row's knobs,
// its uniform draw, its logit edits (bias and penalties, one per token) and its grammar mask.
// SampleBatch packs the rows into one word array (kernels/include/.../sample_layout.h), uploaded
// once per step.
//
// What a row computes (the specification every backend follows):
//   1. adjusted logits: tokens outside the mask -> -inf; each edit applied to its token;
//   2. logprobs (when asked): log-softmax of the adjusted row (in double);
//   3. temperature 0: the best token (ties to the lower id);
//   4. otherwise the allowed tokens are ranked (larger logit first, ties to the lower id); top-k
//      keeps the k best; weights w = exp((l - max) / T) and total = their sum (in token-id
//      order); min-p and top-p cut the ranked prefix (min-p drops a token whose w / total is below
//      min_p times the best one's; top-p keeps the shortest prefix whose w / total, summed in rank
//      order, reaches top_p); the token is drawn from the kept ones by inverse CDF in token-id
//      order: the first whose running weight passes u * (their total weight), else the last.
// The rank order only decides which tokens are kept, never the draw, so a backend may find the
// kept set by thresholds (CUDA bisects a rank key) instead of sorting.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::ops {

inline constexpr int kMaxSampleTop = 20;  // top logprobs one row may ask for

// One token's edit: logit += bias; then, when penalise, the repetition penalty; then
// logit -= subtract (presence + frequency * count).
struct LogitEdit {
  int32_t token = 0;
  float bias = 0.0f;
  bool penalise = false;
  float subtract = 0.0f;
};

struct SampleRow {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // <= 0: off
  float top_p = 1.0f;        // (0, 1]; 1: off
  float min_p = 0.0f;        // [0, 1]; 0: off
  float repetition_penalty = 1.0f;
  double u = 0.0;  // the row's uniform draw in [0, 1) (unused when greedy)
  bool logprobs = false;
  int top_logprobs = 0;           // 0..kMaxSampleTop
  std::vector<LogitEdit> edits;   // at most one per token
  std::vector<uint64_t> allowed;  // the grammar's bitmask over the vocabulary; empty: no mask
};

struct SampleMeta;

// A step's rows packed into the op's word array. add() validates a row (throws kInvalidArgument
// naming what is wrong), so a packed array is always one the kernels may trust.
class SampleBatch {
 public:
  explicit SampleBatch(int vocab);
  void add(const SampleRow& row);
  int rows() const { return static_cast<int>(rows_.size()); }
  int vocab() const { return vocab_; }
  int max_top() const { return max_top_; }  // columns of the outputs: 1 + max_top
  std::vector<int32_t> words() const;
  // words() in a tensor of its own on `device`'s memory, with the shape the op checks.
  SampleMeta upload(const std::shared_ptr<Allocator>& device) const;

 private:
  int vocab_;
  int max_top_ = 0;
  std::vector<SampleRow> rows_;
};

// What the dispatcher and the host implementations know of a packed array without reading it.
struct SampleMeta {
  Tensor words;  // I32, SampleBatch::words(), on the logits' device
  int rows = 0;
  int vocab = 0;
  int max_top = 0;
};

// logits [rows, vocab] F32 (overwritten with the adjusted logits); tokens [rows, 1 + max_top]
// I32 and logprobs [rows, 1 + max_top] F32 receive per row the chosen token and its logprob
// (0 when not asked), then the row's top_logprobs alternatives, best first (the rank order of
// step 4 on the adjusted logits); unused columns get token -1, logprob 0.
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs);

namespace ref {
// Ranks by sorting the whole row: the specification.
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs);
}  // namespace ref
namespace cpu {
// Ranks only as far as the cut needs (a partial sort growing 8x); equal to ref bit for bit.
void sample(Tensor& logits, const SampleMeta& meta, Tensor& tokens, Tensor& logprobs);
}  // namespace cpu

}  // namespace tessera::ops
