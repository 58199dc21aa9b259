// The sampling op's specification (ops/sample.h) on known values, the packing's validation, the
// fast CPU version against the reference on random rows (bit for bit), and the draw's
// distribution. The device parity (cpu, guarded, cuda against ref) is in backend_ops_test.cpp.
#include <cmath>
#include <limits>

#include "sample_util.h"

namespace tessera::ops::test {
namespace {

class SampleOp : public SeededTest {
 protected:
  std::shared_ptr<Allocator> cpu_ = make_allocator(Device::cpu());

  // ref::sample of one row of `logits`: (token, logprob, adjusted logits).
  SampleOut ref_row(std::vector<float> logits, const SampleRow& row) {
    const auto v = static_cast<int64_t>(logits.size());
    Tensor l = Tensor::from_floats(logits, {1, v});
    SampleBatch b(static_cast<int>(v));
    b.add(row);
    Tensor tok = Tensor::empty({1, b.max_top() + 1}, DType::kI32);
    Tensor lp = Tensor::empty({1, b.max_top() + 1}, DType::kF32);
    ref::sample(l, b.upload(cpu_), tok, lp);
    return {l, tok, lp};
  }
  int32_t token(std::vector<float> logits, const SampleRow& row) {
    return ref_row(std::move(logits), row).tokens.data_as<int32_t>()[0];
  }
};

// Weights 1, 2, 3, 4 (mass 10) at temperature 1: the draw walks ids 0, 1, 2, 3 in that order.
const std::vector<float> kLog1234 = {std::log(1.0f), std::log(2.0f), std::log(3.0f),
                                     std::log(4.0f)};

TEST_F(SampleOp, DrawIsAnInverseCdfInTokenIdOrder) {
  EXPECT_EQ(token(kLog1234, {.u = 0.05}), 0);  // 0.5 < 1
  EXPECT_EQ(token(kLog1234, {.u = 0.15}), 1);  // 1.5 in [1, 3)
  EXPECT_EQ(token(kLog1234, {.u = 0.55}), 2);  // 5.5 in [3, 6)
  EXPECT_EQ(token(kLog1234, {.u = 0.65}), 3);  // 6.5 in [6, 10)
}

TEST_F(SampleOp, TruncationsKeepARankedPrefixAndRenormalise) {
  // top_k 2 keeps ids 2 and 3 (mass 7): u 0.4 -> 2.8 < 3 -> token 2; u 0.5 -> 3.5 -> token 3.
  EXPECT_EQ(token(kLog1234, {.top_k = 2, .u = 0.4}), 2);
  EXPECT_EQ(token(kLog1234, {.top_k = 2, .u = 0.5}), 3);
  // top_p 0.5: 0.4 < 0.5, 0.4 + 0.3 reaches it: ids 3 and 2 kept, as top_k 2.
  EXPECT_EQ(token(kLog1234, {.top_p = 0.5f, .u = 0.4}), 2);
  EXPECT_EQ(token(kLog1234, {.top_p = 0.5f, .u = 0.5}), 3);
  // top_p 0.35: the best alone.
  EXPECT_EQ(token(kLog1234, {.top_p = 0.35f, .u = 0.0}), 3);
  // min_p 0.6: floor 0.6 * 0.4 = 0.24 keeps 0.4 and 0.3, drops 0.2 and 0.1.
  EXPECT_EQ(token(kLog1234, {.min_p = 0.6f, .u = 0.4}), 2);
  EXPECT_EQ(token(kLog1234, {.min_p = 0.6f, .u = 0.5}), 3);
  // min_p 0.7: floor 0.28 still keeps 0.3; 0.8: floor 0.32 drops it.
  EXPECT_EQ(token(kLog1234, {.min_p = 0.8f, .u = 0.0}), 3);
  // top_k 3 then top_p 0.6 over the renormalised 4/9, 3/9 (0.78 >= 0.6): ids 3 and 2.
  EXPECT_EQ(token(kLog1234, {.top_k = 3, .top_p = 0.6f, .u = 0.4}), 2);
  // A low temperature sharpens: T = 0.25 makes weights 1, 16, 81, 256 (mass 354).
  EXPECT_EQ(token(kLog1234, {.temperature = 0.25f, .u = 16.5 / 354}), 1);
  EXPECT_EQ(token(kLog1234, {.temperature = 0.25f, .u = 17.5 / 354}), 2);
}

TEST_F(SampleOp, RankTiesGoToTheLowerId) {
  const std::vector<float> tied = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
  EXPECT_EQ(token(tied, {.temperature = 0.0f}), 1);
  // top_k 2 keeps ids 1 and 3 (not 4): a draw near the end lands on 3.
  EXPECT_EQ(token(tied, {.top_k = 2, .u = 0.99}), 3);
  SampleOut o = ref_row(tied, {.temperature = 0.0f, .top_logprobs = 4});
  const int32_t* t = o.tokens.data_as<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(t, t + 5), (std::vector<int32_t>{1, 1, 3, 4, 2}));
}

TEST_F(SampleOp, EditsApplyBiasThenRepetitionThenSubtraction) {
  const std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
  SampleRow row{.temperature = 0.0f, .repetition_penalty = 2.0f};
  row.edits = {{.token = 0, .penalise = true},                // 2 / 2 = 1
               {.token = 1, .penalise = true},                // -2 * 2 = -4
               {.token = 2, .bias = 1.0f, .penalise = true},  // (1 + 1) / 2 = 1
               {.token = 3, .bias = -1.0f, .penalise = true, .subtract = 0.25f}};  // -1.25
  SampleOut o = ref_row(l, row);
  const float* a = o.logits.data_as<float>();
  EXPECT_EQ(std::vector<float>(a, a + 4), (std::vector<float>{1.0f, -4.0f, 1.0f, -1.25f}));
  EXPECT_EQ(o.tokens.data_as<int32_t>()[0], 0);  // 1 == 1: the lower id
}

TEST_F(SampleOp, MaskAndLogprobs) {
  SampleRow row{.u = 0.99, .logprobs = true, .top_logprobs = 3};
  row.allowed = {uint64_t{1} << 1 | uint64_t{1} << 2};  // ids 1 and 2 only
  SampleOut o = ref_row(kLog1234, row);
  const float inf = std::numeric_limits<float>::infinity();
  const float* a = o.logits.data_as<float>();
  EXPECT_EQ(a[0], -inf);
  EXPECT_EQ(a[3], -inf);
  const int32_t* t = o.tokens.data_as<int32_t>();
  const float* lp = o.logprobs.data_as<float>();
  EXPECT_EQ(t[0], 2);  // 0.99 * 5 = 4.95 >= 2
  // Over the allowed tokens: log(3/5); the alternatives 2, 1, then the masked ones by id.
  EXPECT_NEAR(lp[0], std::log(0.6), 1e-6);
  EXPECT_EQ(std::vector<int32_t>(t + 1, t + 4), (std::vector<int32_t>{2, 1, 0}));
  EXPECT_NEAR(lp[2], std::log(0.4), 1e-6);
  EXPECT_EQ(lp[3], -inf);
}

TEST_F(SampleOp, PackingRefusesBadRows) {
  SampleBatch b(100);
  const auto refused = [&](SampleRow r) { EXPECT_THROW(b.add(r), Error); };
  refused({.temperature = -1.0f});
  refused({.top_p = 0.0f});
  refused({.min_p = 1.5f});
  refused({.repetition_penalty = 0.0f});
  refused({.u = 1.0});
  refused({.top_logprobs = kMaxSampleTop + 1});
  refused({.edits = {{.token = 100}}});
  refused({.edits = {{.token = 3}, {.token = 3}}});
  refused({.edits = {{.token = 3, .bias = std::numeric_limits<float>::infinity()}}});
  refused({.allowed = {~uint64_t{0}}});          // 64 bits for 100 tokens
  refused({.allowed = {0, uint64_t{1} << 40}});  // only token 104: outside
  EXPECT_EQ(b.rows(), 0);
  b.add({.top_logprobs = 5, .allowed = {1, 0}});
  EXPECT_EQ(b.rows(), 1);
  EXPECT_EQ(b.max_top(), 5);
}

TEST_F(SampleOp, OpRefusesShapesAndCorruptWords) {
  SampleBatch b(8);
  b.add({});
  std::vector<int32_t> words = b.words();
  Tensor w = Tensor::empty({static_cast<int64_t>(words.size())}, DType::kI32);
  std::copy(words.begin(), words.end(), w.data_as<int32_t>());
  Tensor l = Tensor::zeros({1, 8}, DType::kF32);
  Tensor tok = Tensor::empty({1, 1}, DType::kI32), lp = Tensor::empty({1, 1}, DType::kF32);
  Tensor wide = Tensor::empty({1, 2}, DType::kI32);
  EXPECT_THROW(ops::sample(l, {w, 1, 8, 0}, wide, lp), Error);
  EXPECT_THROW(ops::sample(l, {w, 1, 9, 0}, tok, lp), Error);
  EXPECT_NO_THROW(ops::sample(l, {w, 1, 8, 0}, tok, lp));
  w.data_as<int32_t>()[4 + 9] = 1 << 20;  // the row's edits begin far outside the array
  w.data_as<int32_t>()[4 + 10] = 1;
  EXPECT_THROW(ops::sample(l, {w, 1, 8, 0}, tok, lp), Error);
}

TEST_F(SampleOp, FastCpuEqualsReferenceBitForBit) {
  for (int vocab : {7, 300, 49152}) {
    const int rows = vocab > 1000 ? 12 : 60;
    std::vector<SampleRow> rs;
    for (int r = 0; r < rows; ++r) rs.push_back(random_sample_row(rng(), vocab));
    const Tensor logits = sample_logits(rng(), rows, vocab);
    SampleBatch b(vocab);
    for (const auto& r : rs) b.add(r);
    const SampleMeta meta = b.upload(cpu_);
    Tensor lr = clone(logits), lc = clone(logits);
    const int64_t cols = b.max_top() + 1;
    Tensor tr = Tensor::empty({rows, cols}, DType::kI32),
           tc = Tensor::empty({rows, cols}, DType::kI32);
    Tensor pr = Tensor::empty({rows, cols}, DType::kF32),
           pc = Tensor::empty({rows, cols}, DType::kF32);
    ref::sample(lr, meta, tr, pr);
    cpu::sample(lc, meta, tc, pc);
    for (int64_t i = 0; i < tr.numel(); ++i) {
      ASSERT_EQ(tc.data_as<int32_t>()[i], tr.data_as<int32_t>()[i])
          << "vocab " << vocab << " [" << i << "]";
      ASSERT_EQ(pc.data_as<float>()[i], pr.data_as<float>()[i])
          << "vocab " << vocab << " [" << i << "]";
    }
    ASSERT_EQ(std::memcmp(lr.data(), lc.data(), lr.nbytes()), 0);
    // Every chosen token obeys its row: allowed, within top-k of the allowed.
    for (int r = 0; r < rows; ++r) {
      const int32_t t = tr.data_as<int32_t>()[r * cols];
      ASSERT_GE(t, 0);
      const auto& allowed = rs[static_cast<size_t>(r)].allowed;
      if (!allowed.empty()) {
        EXPECT_TRUE((allowed[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1);
      }
    }
  }
}

// u on a fine grid: the inverse CDF hands each kept token a share of the grid equal to its
// renormalised probability (to one grid step), and nothing to the others.
TEST_F(SampleOp, DrawFrequenciesFollowTheKeptDistribution) {
  const int vocab = 40, grid = 4000;
  std::vector<float> l = normal_vec(vocab);
  for (SampleRow base : {SampleRow{.temperature = 0.8f, .top_k = 6}, SampleRow{.top_p = 0.7f},
                         SampleRow{.temperature = 1.3f, .min_p = 0.1f}}) {
    // The kept set and its probabilities, computed here from the definition (sorted ranking).
    std::vector<int> order(vocab);
    for (int i = 0; i < vocab; ++i) order[static_cast<size_t>(i)] = i;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    const int k = base.top_k > 0 ? base.top_k : vocab;
    std::vector<double> w(vocab, 0.0);
    double total = 0.0;
    for (int i = 0; i < k; ++i)
      total += w[order[i]] = std::exp((l[order[i]] - l[order[0]]) / base.temperature);
    std::vector<bool> kept(vocab, false);
    double cum = 0.0;
    for (int i = 0; i < k; ++i) {
      if (i > 0 && w[order[i]] / total < base.min_p * (w[order[0]] / total)) break;
      kept[order[i]] = true;
      cum += w[order[i]] / total;
      if (base.top_p < 1.0f && cum >= base.top_p) break;
    }
    double mass = 0.0;
    for (int i = 0; i < vocab; ++i) mass += kept[i] ? w[i] : 0.0;
    std::vector<int> hits(vocab, 0);
    for (int g = 0; g < grid; ++g) {
      SampleRow row = base;
      row.u = (g + 0.5) / grid;
      ++hits[static_cast<size_t>(token(l, row))];
    }
    for (int i = 0; i < vocab; ++i) {
      const double want = kept[i] ? w[i] / mass : 0.0;
      EXPECT_NEAR(static_cast<double>(hits[i]) / grid, want, 1.5 / grid) << "token " << i;
    }
  }
}

}  // namespace
}  // namespace tessera::ops::test
