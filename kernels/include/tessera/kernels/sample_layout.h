// The sampling op's per-step metadata (ops::sample, include/tessera/ops/sample.h): one array of
// 32-bit words the host packs (ops::SampleBatch) and uploads once per step, read in place by the
// host implementations (src/ops/sample_rows.cpp) and the CUDA kernel (kernels/sample.cu), plus
// the per-token arithmetic both share, so a CPU test checks the very functions the kernel runs.
// Plain C++ outside nvcc (__host__ __device__ under it). Pure functions; no state.
//
// Layout (word indices):
//   [0] rows  [1] vocab  [2] max_top (top logprobs reported at most, 0..20)  [3] mask words
//   then per row r, kRowWords words at kHeaderWords + r * kRowWords:
//     0 temperature (f32 bits; 0 = greedy)   1 top_k (<= 0: off)   2 top_p (f32)   3 min_p (f32)
//     4 repetition penalty (f32)   5, 6 u (the row's uniform draw in [0, 1), a double's bits,
//     low word first)   7 flags (bit 0: logprobs)   8 top_logprobs   9 first edit (word index)
//     10 edits   11 mask (word index of the row's allowed-token bits; -1: every token allowed)
//   edits: 4 words each (token, bias f32, penalise 0/1, subtract f32), tokens distinct per row;
//   masks: `mask words` words per masked row, token t allowed when bit t % 32 of word t / 32 is
//   set (the little-endian view of the grammar's uint64 bitmask).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TESSERA_SAMPLE_HD __host__ __device__
#else
#define TESSERA_SAMPLE_HD
#endif

namespace tessera::kernels::sample {

inline constexpr int kHeaderWords = 4;
inline constexpr int kRowWords = 12;
inline constexpr int kEditWords = 4;
inline constexpr int kMaxTop = 20;  // sampling::kMaxTopLogprobs

TESSERA_SAMPLE_HD inline float word_float(int32_t w) {
  float f;
  memcpy(&f, &w, sizeof f);
  return f;
}
TESSERA_SAMPLE_HD inline int32_t float_word(float f) {
  int32_t w;
  memcpy(&w, &f, sizeof w);
  return w;
}

struct Row {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  double u = 0.0;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  int32_t edit_begin = 0;
  int32_t edit_count = 0;
  int32_t mask_begin = -1;
};

TESSERA_SAMPLE_HD inline Row read_row(const int32_t* words, int r) {
  const int32_t* w = words + kHeaderWords + r * kRowWords;
  Row row;
  row.temperature = word_float(w[0]);
  row.top_k = w[1];
  row.top_p = word_float(w[2]);
  row.min_p = word_float(w[3]);
  row.repetition_penalty = word_float(w[4]);
  const uint64_t bits = static_cast<uint64_t>(static_cast<uint32_t>(w[5])) |
                        static_cast<uint64_t>(static_cast<uint32_t>(w[6])) << 32;
  memcpy(&row.u, &bits, sizeof row.u);
  row.logprobs = (w[7] & 1) != 0;
  row.top_logprobs = w[8];
  row.edit_begin = w[9];
  row.edit_count = w[10];
  row.mask_begin = w[11];
  return row;
}

TESSERA_SAMPLE_HD inline bool allowed(const int32_t* words, const Row& row, int32_t t) {
  if (row.mask_begin < 0) return true;
  const auto w = static_cast<uint32_t>(words[row.mask_begin + (t >> 5)]);
  return ((w >> (t & 31)) & 1u) != 0;
}

// One edit on its token's logit, in the order of the host sampler: logit bias, then the
// repetition penalty (divides a positive logit, multiplies a negative one), then the presence
// and frequency penalties (one subtraction, precomputed by the host).
TESSERA_SAMPLE_HD inline float edited(float logit, const int32_t* edit, float repetition_penalty) {
  float l = logit + word_float(edit[1]);
#if defined(__CUDA_ARCH__)  // no FMA contraction of the product into the subtraction: as the host
  if (edit[2] != 0)
    l = l > 0.0f ? __fdiv_rn(l, repetition_penalty) : __fmul_rn(l, repetition_penalty);
#else
  if (edit[2] != 0) l = l > 0.0f ? l / repetition_penalty : l * repetition_penalty;
#endif
  return l - word_float(edit[3]);
}

// The ranking of the sampling rules: larger logit first, ties to the lower id, as one unsigned
// key (distinct per token) so "the k best" or "the prefix of the ranking" is "key >= threshold".
TESSERA_SAMPLE_HD inline uint64_t rank_key(float logit, int32_t id) {
  uint32_t b;
  memcpy(&b, &logit, sizeof b);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // order-preserving: -inf lowest
  return static_cast<uint64_t>(b) << 32 | (0xFFFFFFFFu - static_cast<uint32_t>(id));
}

// The id a rank_key was made for.
TESSERA_SAMPLE_HD inline int32_t rank_id(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

// A token's weight under temperature t > 0, relative to the row's largest logit mx (in (0, 1]).
TESSERA_SAMPLE_HD inline float weight(float logit, float mx, float t) {
  return expf((logit - mx) / t);
}

// min-p: a token stays when its probability is at least min_p times the best one's (the best
// always stays). Probabilities are weights over the top-k survivors' total, in double.
TESSERA_SAMPLE_HD inline bool min_p_keeps(double weight, double best_weight, double total,
                                          float min_p) {
  return !(weight / total < static_cast<double>(min_p) * (best_weight / total));
}

}  // namespace tessera::kernels::sample
