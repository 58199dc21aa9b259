// Tensor and pipeline parallelism give the logits of the whole model: a random model with 8 heads
// and 2 KV heads (so T = 4 and 8 replicate KV heads), run as T x P shards on threads over the
// in-process communicator, against the unsharded model on the same prefill + decode steps. The
// sums are reordered by the split, so logits agree to fp32 rounding, not bitwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "tessera/comm/communicator.h"
#include "tessera/core/error.h"
#include "tessera/model/llama.h"
#include "tessera/model/shard.h"
#include "tessera/ops/ops.h"

namespace tessera::model {
namespace {

class RandomWeights final : public WeightSource {
 public:
  RandomWeights(ModelConfig c, DType matrix_dtype, uint32_t seed) : c_(std::move(c)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.15f);
    auto make = [&](const std::string& name, Shape shape, DType dt) {
      const int64_t cols = shape.back(), rows = shape.size() == 2 ? shape[0] : 1;
      std::vector<float> v(static_cast<size_t>(rows * cols));
      for (auto& x : v) x = nd(rng) + (shape.size() == 1 ? 1.0f : 0.0f);
      Tensor t = Tensor::empty(shape, dt);
      for (int64_t r = 0; r < rows; ++r)
        ops::quantize_row(dt, v.data() + r * cols, const_cast<uint8_t*>(t.row_ptr(r)), cols);
      w_[name] = t;
    };
    const int64_t H = c_.hidden_size;
    make("token_embd.weight", {c_.vocab_size, H}, DType::kF32);
    make("output_norm.weight", {H}, DType::kF32);
    if (!c_.tied_embeddings) make("output.weight", {c_.vocab_size, H}, matrix_dtype);
    for (int l = 0; l < c_.num_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      make(p + "attn_norm.weight", {H}, DType::kF32);
      make(p + "ffn_norm.weight", {H}, DType::kF32);
      make(p + "attn_q.weight", {c_.q_dim(), H}, matrix_dtype);
      make(p + "attn_k.weight", {c_.kv_dim(), H}, matrix_dtype);
      make(p + "attn_v.weight", {c_.kv_dim(), H}, matrix_dtype);
      make(p + "attn_output.weight", {H, c_.q_dim()}, matrix_dtype);
      if (c_.qkv_bias) {
        make(p + "attn_q.bias", {c_.q_dim()}, DType::kF32);
        make(p + "attn_k.bias", {c_.kv_dim()}, DType::kF32);
        make(p + "attn_v.bias", {c_.kv_dim()}, DType::kF32);
      }
      make(p + "ffn_gate.weight", {c_.intermediate_size, H}, matrix_dtype);
      make(p + "ffn_up.weight", {c_.intermediate_size, H}, matrix_dtype);
      make(p + "ffn_down.weight", {H, c_.intermediate_size}, matrix_dtype);
    }
  }
  const ModelConfig& config() const override { return c_; }
  bool has(const std::string& n) const override { return w_.contains(n); }
  Tensor get(const std::string& n) const override {
    auto it = w_.find(n);
    if (it == w_.end()) fail(ErrorCode::kNotFound, "no weight ", n);
    return it->second;
  }
  std::string describe() const override { return "random weights"; }

 private:
  ModelConfig c_;
  std::map<std::string, Tensor> w_;
};

ModelConfig tiny_config(bool tied, bool bias) {
  ModelConfig c;
  c.architecture = bias ? "qwen2" : "llama";
  c.vocab_size = 301;  // not a multiple of any T: the last vocabulary shard is short
  c.hidden_size = 64;
  c.num_layers = 5;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 256;
  c.max_position = 256;
  c.tied_embeddings = tied;
  c.qkv_bias = bias;
  c.rope.head_dim = 16;
  c.rope.style = bias ? ops::RopeStyle::kNeox : ops::RopeStyle::kInterleaved;
  c.validate();
  return c;
}

// Two sequences: a prefill of first[0] and first[1] tokens in one step (7 and 3 by default), then
// 3 decode steps of both.
struct Steps {
  std::vector<std::vector<int32_t>> tokens, positions, slots, qs, lens, tables, rows;
};
Steps make_steps(std::mt19937& rng, int vocab, std::vector<int> first = {7, 3}) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  const int bs = 4, max_blocks = 4;
  const std::vector<std::vector<int32_t>> table{{5, 2, 7, 0}, {3, 6, 1, 4}};  // not contiguous
  Steps s;
  std::vector<int> len{0, 0};
  for (int step = 0; step < 4; ++step) {
    const std::vector<int> feed = step == 0 ? first : std::vector<int>{1, 1};
    std::vector<int32_t> t, p, sl, q{0}, l, tb, rows;
    for (int i = 0; i < 2; ++i) {
      for (int k = 0; k < feed[i]; ++k) {
        const int pos = len[i] + k;
        t.push_back(tok(rng));
        p.push_back(pos);
        sl.push_back(table[i][pos / bs] * bs + pos % bs);
      }
      len[i] += feed[i];
      q.push_back(static_cast<int32_t>(t.size()));
      l.push_back(len[i]);
      tb.insert(tb.end(), table[i].begin(), table[i].begin() + max_blocks);
      rows.push_back(static_cast<int32_t>(t.size() - 1));
    }
    s.tokens.push_back(t), s.positions.push_back(p), s.slots.push_back(sl), s.qs.push_back(q);
    s.lens.push_back(l), s.tables.push_back(tb), s.rows.push_back(rows);
  }
  return s;
}

ForwardBatch batch_of(const Steps& s, size_t i) {
  return {.tokens = s.tokens[i],
          .positions = s.positions[i],
          .slots = s.slots[i],
          .query_start = s.qs[i],
          .context_lens = s.lens[i],
          .block_tables = s.tables[i],
          .max_blocks_per_seq = 4,
          .logit_rows = s.rows[i]};
}

std::vector<std::vector<float>> run_whole(const WeightSource& w, const Steps& s) {
  LlamaModel m(w);
  auto kp = m.kv_shape(4);
  kp.num_blocks = 8;
  kv_cache::KvPool kv(kp);
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    Tensor l = m.forward(batch_of(s, i), kv);
    out.emplace_back(l.f32().begin(), l.f32().end());
  }
  return out;
}

// Every rank on its own thread, as the worker processes would run: stage s receives hidden
// states from stage s-1 on its PP group and sends its own on; TP rank 0 of the last stage keeps
// the logits.
std::vector<std::vector<float>> run_sharded(const WeightSource& w, const Steps& s, int T, int P,
                                            const std::vector<int>& split, bool overlap = false,
                                            bool sequence_parallel = false) {
  const auto ranges = stage_ranges(w.config().num_layers, P, split);
  std::vector<std::vector<std::unique_ptr<comm::Communicator>>> tp, pp;
  for (int st = 0; st < P; ++st)
    tp.push_back(comm::make_local_group(T, "tp[stage " + std::to_string(st) + "]", 20));
  for (int r = 0; r < T; ++r)
    pp.push_back(comm::make_local_group(P, "pp[tp " + std::to_string(r) + "]", 20));
  std::vector<std::vector<float>> out;
  std::vector<std::string> errors(static_cast<size_t>(T * P));
  std::vector<std::thread> threads;
  for (int st = 0; st < P; ++st)
    for (int r = 0; r < T; ++r)
      threads.emplace_back([&, st, r] {
        try {
          const ShardSpec spec{.tp_rank = r,
                               .tp_size = T,
                               .first_layer = ranges[st].first,
                               .num_layers = ranges[st].second,
                               .stage = st,
                               .num_stages = P,
                               .tp_overlap = overlap,
                               .sequence_parallel = sequence_parallel};
          LlamaModel m(w, spec, tp[st][r].get());
          auto kp = m.kv_shape(4);
          kp.num_blocks = 8;
          kv_cache::KvPool kv(kp);
          for (size_t i = 0; i < s.tokens.size(); ++i) {
            const ForwardBatch b = batch_of(s, i);
            Tensor in;
            if (st > 0) {
              in = Tensor::empty({static_cast<int64_t>(b.tokens.size()), w.config().hidden_size},
                                 DType::kF32);
              pp[r][st]->recv(in, st - 1);
            }
            Tensor o = m.forward(b, kv, st > 0 ? &in : nullptr);
            if (st + 1 < P)
              pp[r][st]->send(o, st + 1);
            else if (r == 0)
              out.emplace_back(o.f32().begin(), o.f32().end());
          }
        } catch (const std::exception& e) {
          errors[static_cast<size_t>(st * T + r)] = e.what();
        }
      });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  return out;
}

struct Layout {
  int T, P;
  std::vector<int> split;
  DType dtype;
  bool tied, bias;
};

class ShardedModel : public ::testing::TestWithParam<Layout> {};

TEST_P(ShardedModel, LogitsMatchTheWholeModel) {
  // The exact activation path: sharding only reorders fp32 sums, which int8 activations would
  // turn into whole rounding steps now and then (int8_matmul_test covers that path).
  struct ExactScope {
    ops::cpu::Activations saved = ops::cpu::activations();
    ExactScope() { ops::cpu::set_activations(ops::cpu::Activations::kF32); }
    ~ExactScope() { ops::cpu::set_activations(saved); }
  } exact;
  const auto& L = GetParam();
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomWeights w(tiny_config(L.tied, L.bias), L.dtype, seed);
  std::mt19937 rng(seed);
  const Steps steps = make_steps(rng, w.config().vocab_size);
  const auto want = run_whole(w, steps);
  const auto got = run_sharded(w, steps, L.T, L.P, L.split);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    float worst = 0, scale = 0;
    for (size_t j = 0; j < want[i].size(); ++j) {
      worst = std::max(worst, std::abs(got[i][j] - want[i][j]));
      scale = std::max(scale, std::abs(want[i][j]));
    }
    // fp32 sums of 64..256 terms in another order: relative error of a few ulps times sqrt(n).
    EXPECT_LE(worst, 1e-4f * std::max(1.0f, scale)) << "step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ShardedModel,
                         ::testing::Values(Layout{2, 1, {}, DType::kF32, false, false},
                                           Layout{4, 1, {}, DType::kF32, true, false},
                                           Layout{8, 1, {}, DType::kF32, false, true},
                                           Layout{1, 2, {}, DType::kF32, true, false},
                                           Layout{2, 2, {1, 4}, DType::kF32, false, false},
                                           Layout{1, 5, {}, DType::kF32, false, true},
                                           Layout{2, 3, {2, 2, 1}, DType::kQ8_0, true, false},
                                           Layout{4, 1, {}, DType::kQ8_0, false, false},
                                           Layout{2, 1, {}, DType::kF16, false, true}),
                         [](const auto& info) {
                           const auto& L = info.param;
                           std::string split;
                           for (int n : L.split) split += "_" + std::to_string(n);
                           return "T" + std::to_string(L.T) + "xP" + std::to_string(L.P) + split +
                                  "_" + std::string(dtype_name(L.dtype)) + (L.tied ? "_tied" : "") +
                                  (L.bias ? "_bias" : "");
                         });

TEST(ShardLayout, ConstraintsNameTheValidChoices) {
  ModelConfig c = tiny_config(false, false);
  c.num_heads = 9, c.num_kv_heads = 3, c.head_dim = 64, c.hidden_size = 576,
  c.intermediate_size = 4608;
  try {
    tp_layout(c, 0, 2);
    FAIL() << "T=2 accepted for 9 heads";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("valid: 1, 3, 9"), std::string::npos) << e.what();
  }
  const TpLayout t = tp_layout(c, 2, 3);
  EXPECT_EQ(t.heads, 3);
  EXPECT_EQ(t.first_head, 6);
  EXPECT_EQ(t.kv_heads, 1);
  EXPECT_EQ(t.first_kv_head, 2);
  EXPECT_EQ(t.ffn, 1536);
  const TpLayout r = tp_layout(c, 7, 9);  // 9 ranks over 3 KV heads: each replicated 3 times
  EXPECT_EQ(r.first_kv_head, 2);
  EXPECT_EQ(stage_ranges(30, 4, {}),
            (std::vector<std::pair<int, int>>{{0, 8}, {8, 8}, {16, 7}, {23, 7}}));
  EXPECT_THROW(stage_ranges(30, 2, {10, 10}), Error);
  EXPECT_THROW(stage_ranges(3, 4, {}), Error);
}

// The default split balances bytes read per step: the last stage, which also reads the LM head,
// gets fewer layers, and no stage reads more than under the even split.
TEST(ShardLayout, BalancedSplitAccountsForTheLmHead) {
  ModelConfig c = tiny_config(/*tied=*/false, false);
  c.num_layers = 12;
  c.vocab_size = 4096;  // LM head of 4096 x 64 F32 = 1 MiB, about 4 layers of this model
  const RandomWeights w(c, DType::kF32, 1);
  auto bytes = [&](const std::vector<int>& split) {
    std::vector<double> stage;
    int l = 0;
    for (int n : split) {
      double b = 0;
      for (int k = 0; k < n; ++k, ++l)
        for (const char* t :
             {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
          b +=
              static_cast<double>(w.get("blk." + std::to_string(l) + "." + t + ".weight").nbytes());
      stage.push_back(b);
    }
    stage.back() += static_cast<double>(w.get("output.weight").nbytes());
    return *std::max_element(stage.begin(), stage.end());
  };
  for (int P : {2, 3, 4}) {
    const std::vector<int> split = balanced_split(w, P);
    ASSERT_EQ(static_cast<int>(split.size()), P);
    EXPECT_EQ(std::accumulate(split.begin(), split.end(), 0), 12);
    for (int n : split) EXPECT_GE(n, 1);
    EXPECT_LT(split.back(), 12 / P) << "P=" << P;
    std::vector<int> even;
    for (const auto& r : stage_ranges(12, P, {})) even.push_back(r.second);
    EXPECT_LT(bytes(split), bytes(even)) << "P=" << P;
  }
}

TEST(ShardLayout, QuantizedColumnsMustSplitOnBlocks) {
  Tensor w = Tensor::empty({4, 64}, DType::kQ8_0);
  EXPECT_THROW(shard_cols(w, 0, 16, "w"), Error);
  EXPECT_EQ(shard_cols(w, 32, 64, "w").dim(1), 32);
}

// Stacked experts [E, R, C]: every expert loses the same rows (gate/up) or columns (down).
TEST(ShardLayout, ExpertSlicesTakeTheSameRowsAndColumnsOfEveryExpert) {
  std::mt19937 rng(std::random_device{}());
  const int64_t E = 3, R = 8, C = 6;
  Tensor w = Tensor::empty({E, R, C}, DType::kF32);
  for (int64_t i = 0; i < w.numel(); ++i)
    w.data_as<float>()[i] = std::uniform_real_distribution<float>(-1, 1)(rng);
  auto at = [&](const Tensor& t, int64_t e, int64_t r, int64_t c) {
    return t.data_as<float>()[(e * t.dim(1) + r) * t.dim(2) + c];
  };
  const Tensor rows = shard_expert_rows(w, 2, 6, "w");
  ASSERT_EQ(rows.shape(), (Shape{E, 4, C}));
  const Tensor cols = shard_expert_cols(w, 3, 6, "w");
  ASSERT_EQ(cols.shape(), (Shape{E, R, 3}));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        if (r >= 2 && r < 6) {
          EXPECT_EQ(at(rows, e, r - 2, c), at(w, e, r, c));
        }
        if (c >= 3) {
          EXPECT_EQ(at(cols, e, r, c - 3), at(w, e, r, c));
        }
      }
  EXPECT_THROW(shard_expert_rows(w, 6, 9, "w"), Error);
  EXPECT_THROW(shard_expert_cols(Tensor::empty({2, 4, 64}, DType::kQ8_0), 0, 16, "w"), Error);
}

}  // namespace
}  // namespace tessera::model

namespace tessera::model {
namespace {

// tp_overlap cuts each step in two micro-batches (llama_overlap.cpp) and must not change a bit:
// a prefill of 20 rows (not cut: sgemm's rows depend on M, see ops::exact_row_split) and one of 8
// rows (cut at 4, inside the first sequence's 5) or 9 (not cut), then decodes of 2 rows (cut
// between the sequences), on TP=2 and TP=4 (KV heads replicated), with a pipeline stage after, F32
// and Q8_0 weights, both CPU activation modes. sequence_parallel (llama_sequence_parallel.cpp: the
// residual cut by rows among the TP ranks, reduce-scatter + all-gather for each all-reduce) must
// not either, alone (20 rows: 10 per rank at T=2, 5 at T=4; 8 rows; 2 rows: 1 per rank at T=2, half
// the ranks hold only padding at T=4) and with tp_overlap (which takes the steps it cuts).
struct OverlapCase {
  int T, P;
  DType dtype;
  ops::cpu::Activations activations;
};
class OverlappedShards : public ::testing::TestWithParam<OverlapCase> {};

TEST_P(OverlappedShards, LogitsAreBitwiseThoseWithoutOverlap) {
  const auto& k = GetParam();
  struct Scope {
    ops::cpu::Activations saved = ops::cpu::activations();
    explicit Scope(ops::cpu::Activations a) { ops::cpu::set_activations(a); }
    ~Scope() { ops::cpu::set_activations(saved); }
  } scope(k.activations);
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomWeights w(tiny_config(false, k.T == 2), k.dtype, seed);
  for (const std::vector<int>& first :
       {std::vector<int>{13, 7}, std::vector<int>{5, 3}, std::vector<int>{6, 3}}) {
    std::mt19937 rng(seed);
    const Steps steps = make_steps(rng, w.config().vocab_size, first);
    const std::vector<int> split = k.P == 2 ? std::vector<int>{3, 2} : std::vector<int>{};
    const auto off = run_sharded(w, steps, k.T, k.P, split, false);
    ASSERT_EQ(off.size(), steps.tokens.size());
    for (const auto& [overlap, sp] : {std::pair{true, false}, {false, true}, {true, true}}) {
      SCOPED_TRACE(std::string("tp_overlap ") + (overlap ? "on" : "off") + ", sequence_parallel " +
                   (sp ? "on" : "off"));
      const auto on = run_sharded(w, steps, k.T, k.P, split, overlap, sp);
      ASSERT_EQ(on.size(), off.size());
      for (size_t i = 0; i < on.size(); ++i) {
        ASSERT_EQ(on[i].size(), off[i].size());
        EXPECT_EQ(std::memcmp(on[i].data(), off[i].data(), on[i].size() * sizeof(float)), 0)
            << "prefill " << first[0] << "+" << first[1] << ", step " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, OverlappedShards,
    ::testing::Values(OverlapCase{2, 1, DType::kF32, ops::cpu::Activations::kF32},
                      OverlapCase{4, 1, DType::kF32, ops::cpu::Activations::kF32},
                      OverlapCase{2, 2, DType::kF32, ops::cpu::Activations::kF32},
                      OverlapCase{2, 1, DType::kQ8_0, ops::cpu::Activations::kInt8},
                      OverlapCase{2, 1, DType::kQ8_0, ops::cpu::Activations::kF32}),
    [](const auto& info) {
      const auto& k = info.param;
      return "T" + std::to_string(k.T) + "xP" + std::to_string(k.P) + "_" +
             std::string(dtype_name(k.dtype)) + "_" + ops::cpu::activations_name(k.activations);
    });

}  // namespace
}  // namespace tessera::model
