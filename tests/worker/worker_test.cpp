// The Worker on a tiny llama GGUF written here (random f32 weights, 2 layers, 4 heads over 2 KV
// heads, 64-token vocabulary): greedy tokens do not depend on how the prompt is chunked or what
// else is in the batch, bad plans are refused with the worker still usable, and finished
// sequences are dropped; a grammar-constrained sequence follows its grammar beside a free one; on
// the guarded device the worker gives the same tokens, and a host read of the model's device output
// dies. No model file is needed.
#include "tessera/worker/worker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "../model/tiny_llama.h"
#include "tessera/core/error.h"
#include "tessera/model/local_runner.h"

namespace tessera::worker {
namespace {

using model::testing::kVocab;
using model::testing::write_tiny_llama;
constexpr int kBlockSize = 4, kNumBlocks = 32;

WorkerParams params() {
  static const std::string path = write_tiny_llama(7);
  return {
      .model_path = path, .num_blocks = kNumBlocks, .block_size = kBlockSize, .kv_cache_bytes = 0};
}

std::vector<int32_t> blocks(int first, int n) {
  std::vector<int32_t> b(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) b[size_t(i)] = first + i;
  return b;
}

protocol::NewSequence greedy(uint64_t id, const std::vector<int32_t>& prompt) {
  protocol::NewSequence s{.seq_id = id, .prompt = prompt};
  s.sampling.temperature = 0.0f;
  return s;
}

// Runs `prompt` for seq 1 with its prefill cut at `cuts` (token counts per chunk), optionally next
// to a second sequence, and decodes `n` tokens greedily. Returns seq 1's tokens.
std::vector<int32_t> run(Worker& w, const std::vector<int32_t>& prompt, std::vector<int> cuts,
                         bool with_neighbour, int n) {
  const std::vector<int32_t> other{5, 9, 13, 17, 21, 25, 29};
  std::vector<int32_t> out;
  int pos = 0;
  int32_t other_pos = 0;
  int32_t other_last = -1;
  bool first = true;
  auto neighbour = [&](protocol::ExecutePlan& plan) {
    if (!with_neighbour) return;
    if (first) plan.new_sequences.push_back(greedy(2, other));
    if (other_last < 0) {
      plan.chunks.push_back({.seq_id = 2,
                             .tokens = other,
                             .start_pos = 0,
                             .block_table = blocks(16, 8),
                             .sample = true});
      other_pos = int32_t(other.size());
    } else {
      plan.chunks.push_back({.seq_id = 2,
                             .tokens = {other_last},
                             .start_pos = other_pos,
                             .block_table = blocks(16, 8),
                             .sample = true});
      ++other_pos;
    }
  };
  auto take = [&](const protocol::ExecuteResult& r, uint64_t id) {
    for (const auto& s : r.sampled)
      if (s.seq_id == id) return s.result.token;
    ADD_FAILURE() << "no token for sequence " << id;
    return int32_t(-1);
  };
  for (size_t c = 0; c < cuts.size(); ++c) {
    protocol::ExecutePlan plan;
    if (first) plan.new_sequences.push_back(greedy(1, prompt));
    const bool last = c + 1 == cuts.size();
    plan.chunks.push_back({.seq_id = 1,
                           .tokens = {prompt.begin() + pos, prompt.begin() + pos + cuts[c]},
                           .start_pos = pos,
                           .block_table = blocks(0, 8),
                           .sample = last});
    pos += cuts[c];
    neighbour(plan);
    first = false;
    const auto r = w.execute(plan);
    if (with_neighbour) other_last = take(r, 2);
    if (last) out.push_back(take(r, 1));
  }
  while (int(out.size()) < n) {
    protocol::ExecutePlan plan;
    plan.chunks.push_back({.seq_id = 1,
                           .tokens = {out.back()},
                           .start_pos = pos,
                           .block_table = blocks(0, 8),
                           .sample = true});
    ++pos;
    neighbour(plan);
    const auto r = w.execute(plan);
    if (with_neighbour) other_last = take(r, 2);
    out.push_back(take(r, 1));
  }
  protocol::ExecutePlan drop;
  drop.finished = {1, 2};
  w.execute(drop);
  return out;
}

TEST(Worker, GreedyTokensDoNotDependOnChunkingOrTheBatch) {
  const std::vector<int32_t> prompt{1, 7, 3, 60, 22, 41, 8, 8, 30, 12};
  Worker alone(params());
  EXPECT_EQ(alone.num_blocks(), kNumBlocks);
  const auto want = run(alone, prompt, {10}, false, 6);
  for (int32_t t : want) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, kVocab);
  }
  Worker w(params());
  EXPECT_EQ(run(w, prompt, {4, 6}, false, 6), want) << "prefill in two chunks";
  EXPECT_EQ(run(w, prompt, {3, 3, 4}, true, 6), want) << "three chunks next to another sequence";
  EXPECT_EQ(run(w, prompt, {10}, true, 6), want) << "one chunk next to another sequence";
  EXPECT_EQ(w.live_sequences(), 0u);  // every run drops its sequences at the end
  // The tokens come from the model, not from a constant: another prompt continues otherwise.
  EXPECT_NE(run(w, {2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, {10}, false, 6), want);
}

// Token t of the tiny model: a digit (t < 10), a letter (t < 36), a digit and a letter; 63: EOS.
std::shared_ptr<const grammar::Vocabulary> tiny_vocab() {
  const std::string chars = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::vector<std::string> toks;
  for (int t = 0; t < kVocab; ++t)
    toks.push_back(t < 36 ? std::string(1, chars[size_t(t)])
                          : std::string{chars[size_t(t % 10)], chars[size_t(10 + t % 26)]});
  return std::make_shared<const grammar::Vocabulary>(toks, std::vector<int32_t>{kVocab - 1});
}

// Decodes seq 1 (maybe constrained) beside seq 2 (never) for `n` <= 60 steps in shared plans.
std::pair<std::vector<int32_t>, std::vector<int32_t>> decode_pair(Worker& w,
                                                                  const std::string& gbnf, int n,
                                                                  uint64_t seed) {
  const std::vector<int32_t> p1{1, 7, 3, 60}, p2{5, 9, 13, 17};
  protocol::ExecutePlan plan;
  protocol::NewSequence s1{.seq_id = 1, .prompt = p1}, s2 = greedy(2, p2);
  s1.sampling.temperature = 1.0f;
  s1.sampling.seed = seed;
  s1.sampling.grammar = gbnf;
  plan.new_sequences = {s1, s2};
  plan.chunks.push_back(
      {.seq_id = 1, .tokens = p1, .start_pos = 0, .block_table = blocks(0, 16), .sample = true});
  plan.chunks.push_back(
      {.seq_id = 2, .tokens = p2, .start_pos = 0, .block_table = blocks(16, 16), .sample = true});
  std::vector<int32_t> out1, out2;
  for (int step = 0; step < n; ++step) {
    const auto r = w.execute(plan);
    for (const auto& t : r.sampled) (t.seq_id == 1 ? out1 : out2).push_back(t.result.token);
    plan = {};
    plan.chunks.push_back({.seq_id = 1,
                           .tokens = {out1.back()},
                           .start_pos = int32_t(p1.size()) + step,
                           .block_table = blocks(0, 16),
                           .sample = true});
    plan.chunks.push_back({.seq_id = 2,
                           .tokens = {out2.back()},
                           .start_pos = int32_t(p2.size()) + step,
                           .block_table = blocks(16, 16),
                           .sample = true});
  }
  protocol::ExecutePlan drop;
  drop.finished = {1, 2};
  w.execute(drop);
  return {out1, out2};
}

TEST(Worker, ConstrainedAndFreeSequencesShareSteps) {
  WorkerParams p = params();
  p.vocabulary = tiny_vocab();
  Worker w(p);
  const auto [free1, free2] = decode_pair(w, "", 8, 1);
  auto vocab = tiny_vocab();
  for (uint64_t seed = 1; seed < 12; ++seed) {
    const auto [out1, out2] = decode_pair(w, R"(root ::= [0-4]{2,4} [a-c])", 8, seed);
    EXPECT_EQ(out2, free2) << "the unconstrained neighbour is untouched";
    std::string text;
    size_t k = 0;
    for (; k < out1.size() && out1[k] != kVocab - 1; ++k) text += vocab->bytes(out1[k]);
    ASSERT_LT(k, out1.size()) << "no EOS after a complete sentence: " << text;
    for (; k < out1.size(); ++k) EXPECT_EQ(out1[k], kVocab - 1) << "only EOS once terminated";
    EXPECT_TRUE(text.size() >= 3 && text.size() <= 5 &&
                text.find_first_not_of("01234") == text.size() - 1 &&
                std::string("abc").find(text.back()) != std::string::npos)
        << text;
  }
  WorkerParams bare = params();
  Worker no_vocab(bare);
  EXPECT_THROW(decode_pair(no_vocab, "root ::= \"a\"", 1, 1), Error);
}

TEST(Worker, AGrammarPastItsLimitsEndsItsSequenceOnly) {
  // ("a" | "aa" | ... | 100 a's){100} "b": only "a" can come for the first 100 tokens, and after n
  // of them every (repetition, alternative, offset) left open is a live parse stack: past the 512
  // cap within a few tokens.
  // The sequence then ends (EOS only); its neighbour is unaffected.
  std::string gbnf = "root ::= (";
  for (int k = 1; k <= 100; ++k)
    gbnf += (k > 1 ? " | \"" : "\"") + std::string(size_t(k), 'a') + "\"";
  gbnf += "){100} \"b\"";
  WorkerParams p = params();
  p.vocabulary = tiny_vocab();
  Worker w(p);
  const auto [free1, free2] = decode_pair(w, "", 60, 1);
  const auto [out1, out2] = decode_pair(w, gbnf, 60, 1);
  EXPECT_EQ(out2, free2);
  const auto eos = std::find(out1.begin(), out1.end(), kVocab - 1);
  ASSERT_NE(eos, out1.end()) << "the grammar never gave up";
  EXPECT_GE(eos - out1.begin(), 2);  // some "a"s first
  EXPECT_TRUE(std::all_of(out1.begin(), eos, [](int32_t t) { return t == 10; }));  // "a"
  EXPECT_TRUE(std::all_of(eos, out1.end(), [](int32_t t) { return t == kVocab - 1; }));
}

TEST(Worker, BadPlansAreRefusedAndTheWorkerStaysUsable) {
  const std::vector<int32_t> prompt{4, 4, 2, 9, 50};
  Worker ref(params());
  const auto want = run(ref, prompt, {5}, false, 3);

  Worker w(params());
  auto plan_for = [&](std::vector<int32_t> tokens, std::vector<int32_t> table, uint64_t id = 1) {
    protocol::ExecutePlan p;
    p.new_sequences.push_back(greedy(1, prompt));
    p.chunks.push_back({.seq_id = id,
                        .tokens = std::move(tokens),
                        .start_pos = 0,
                        .block_table = std::move(table),
                        .sample = true});
    return p;
  };
  EXPECT_THROW(w.execute(plan_for(prompt, blocks(0, 8), /*id=*/3)), Error);  // unknown sequence
  protocol::ExecutePlan drop;
  drop.finished = {1};
  w.execute(drop);
  EXPECT_THROW(w.execute(plan_for({4, 4, kVocab + 3, 9, 50}, blocks(0, 8))), Error);
  w.execute(drop);
  EXPECT_THROW(w.execute(plan_for(prompt, {0, kNumBlocks + 5})), Error);  // block outside
  w.execute(drop);
  EXPECT_THROW(w.execute(plan_for(prompt, {0})), Error);  // 5 tokens, one 4-token block
  w.execute(drop);
  EXPECT_EQ(w.live_sequences(), 0u);
  EXPECT_EQ(run(w, prompt, {5}, false, 3), want);
}

// Weights, activations, step metadata and KV pool on the guarded device: the same tokens as on the
// CPU (the same kernels run), bad plans still refused, and nothing on the worker's path touches
// device memory from the host (it would die here).
TEST(Worker, RunsUnchangedOnTheGuardedDevice) {
  const std::vector<int32_t> prompt{1, 7, 3, 60, 22, 41, 8, 8, 30, 12};
  Worker cpu(params());
  const auto want = run(cpu, prompt, {4, 6}, true, 6);
  WorkerParams gp = params();
  gp.device = Device::guarded(0);
  Worker g(gp);
  EXPECT_EQ(g.device(), Device::guarded(0));
  EXPECT_EQ(run(g, prompt, {4, 6}, true, 6), want);
  EXPECT_EQ(run(g, prompt, {10}, false, 6), want);
  protocol::ExecutePlan bad;
  bad.new_sequences.push_back(greedy(1, prompt));
  bad.chunks.push_back({.seq_id = 1,
                        .tokens = prompt,
                        .start_pos = 0,
                        .block_table = {0, kNumBlocks + 5, 1},
                        .sample = true});
  EXPECT_THROW(g.execute(bad), Error);  // checked on the host, before anything reaches the device
  protocol::ExecutePlan drop;
  drop.finished = {1};
  g.execute(drop);
  EXPECT_EQ(run(g, prompt, {10}, false, 6), want);
}

// An F16 / BF16 KV pool stores K and V rounded (2^-11 / 2^-8 relative) and changes nothing else:
// the logits of a prefill and of the decodes that read it back move, but by little, on the CPU
// and the guarded device alike; the greedy worker, whose tokens here have margins far above that,
// decodes the same tokens.
TEST(Worker, HalfKvCachesStayCloseToF32) {
  const auto weights = model::open_weights(params().model_path);
  const std::vector<int32_t> prompt{1, 7, 3, 60, 22, 41, 8, 8, 30, 12};
  for (Device dev : {Device::cpu(), Device::guarded(0)}) {
    const model::LlamaModel m(*weights, {}, nullptr, default_allocator(dev));
    const auto logits = [&](DType kv) {
      model::LocalRunner r(m, {.num_blocks = 8, .block_size = kBlockSize, .kv_dtype = kv});
      const int seq = r.add_sequence();
      std::vector<float> all;
      const model::LocalRunner::Chunk pre{.seq = seq,
                                          .tokens = {prompt.begin(), prompt.begin() + 6}};
      Tensor out = to_host(r.step({&pre, 1}));
      all.insert(all.end(), out.data_as<float>(), out.data_as<float>() + out.numel());
      for (size_t i = 6; i < prompt.size(); ++i) {
        const model::LocalRunner::Chunk one{.seq = seq, .tokens = {&prompt[i], 1}};
        out = to_host(r.step({&one, 1}));
        all.insert(all.end(), out.data_as<float>(), out.data_as<float>() + out.numel());
      }
      return all;
    };
    const auto f32 = logits(DType::kF32);
    double scale = 0.0;  // the logits' magnitude: errors are relative to it
    for (float x : f32) scale = std::max(scale, double{std::abs(x)});
    for (auto [kv, unit] : {std::pair{DType::kF16, 0x1p-11}, {DType::kBF16, 0x1p-8}}) {
      // Each stored value moves by at most `unit` of itself; through attention, the output
      // projection and the later layers the logits move by a small multiple of unit * scale
      // (measured: 1.8x bf16, 2.2x f16), and the bound allows 8x.
      const double bound = 8 * unit * scale;
      const auto half = logits(kv);
      ASSERT_EQ(half.size(), f32.size());
      double worst = 0.0;
      for (size_t i = 0; i < f32.size(); ++i)
        worst = std::max(worst, std::abs(double{half[i]} - f32[i]));
      EXPECT_GT(worst, 0.0) << dev.str() << " " << dtype_name(kv) << ": the cache type is unused";
      EXPECT_LT(worst, bound) << dev.str() << " " << dtype_name(kv) << " scale " << scale;
    }
  }
  for (DType kv : {DType::kF16, DType::kBF16}) {
    Worker f32(params());
    WorkerParams hp = params();
    hp.kv_cache_dtype = kv;
    Worker half(hp);
    EXPECT_EQ(run(half, prompt, {4, 6}, true, 6), run(f32, prompt, {4, 6}, true, 6))
        << dtype_name(kv);
  }
}

// Decode graphs on (GraphMode::kOn; on the CPU and the guarded device each replay re-runs the ops
// over the graph's padded persistent buffers): three sequences prefilled at different lengths then
// decoding together (bucket 4, one padding row whose slot -1 must cache nothing) give the tokens
// and logprobs of the op-by-op worker. The padded step multiplies 4 rows where op by op multiplies
// 3, so the int8 path's row-count-dependent kernels may round differently: logprobs within 1e-4.
TEST(Worker, DecodeGraphsMatchOpByOp) {
  const std::vector<std::vector<int32_t>> prompts{
      {1, 7, 3, 60, 22}, {5, 9, 13}, {40, 2, 8, 8, 30, 12, 19, 21, 33, 4, 50, 17, 18}};
  for (Device dev : {Device::cpu(), Device::guarded(0)}) {
    auto decode = [&](GraphMode mode) {
      WorkerParams p = params();
      p.device = dev;
      p.graph_mode = mode;
      p.graph_max_batch = 8;
      Worker w(p);
      EXPECT_EQ(w.decode_graphs() != nullptr, mode == GraphMode::kOn) << dev.str();
      if (w.decode_graphs()) {
        EXPECT_EQ(w.decode_graphs()->buckets(), (std::vector<int>{1, 2, 4, 8}));
      }
      std::vector<std::pair<int32_t, float>> out;
      std::vector<int32_t> pos(prompts.size()), last(prompts.size());
      for (int step = 0; step < 6; ++step) {
        protocol::ExecutePlan plan;
        for (size_t i = 0; i < prompts.size(); ++i) {
          const auto id = static_cast<uint64_t>(i + 1);
          if (step == 0) {
            protocol::NewSequence s = greedy(id, prompts[i]);
            s.sampling.logprobs = true;
            plan.new_sequences.push_back(s);
          }
          const std::vector<int32_t> tokens = step == 0 ? prompts[i] : std::vector<int32_t>{last[i]};
          plan.chunks.push_back({.seq_id = id,
                                 .tokens = tokens,
                                 .start_pos = pos[i],
                                 .block_table = blocks(static_cast<int>(i) * 8, 8),
                                 .sample = true});
          pos[i] += static_cast<int32_t>(tokens.size());
        }
        const protocol::ExecuteResult r = w.execute(plan);
        EXPECT_EQ(r.sampled.size(), prompts.size());
        for (const auto& sr : r.sampled) {
          last[sr.seq_id - 1] = sr.result.token;
          out.emplace_back(sr.result.token, sr.result.logprob);
        }
      }
      // The prefill ran op by op; the five decode steps (3 rows, bucket 4) from the graph.
      if (w.decode_graphs()) {
        EXPECT_EQ(w.decode_graphs()->replays(), 5) << dev.str();
      }
      return out;
    };
    const auto eager = decode(GraphMode::kOff), graphs = decode(GraphMode::kOn);
    ASSERT_EQ(eager.size(), graphs.size());
    for (size_t i = 0; i < eager.size(); ++i) {
      EXPECT_EQ(eager[i].first, graphs[i].first) << dev.str() << " token " << i;
      EXPECT_NEAR(eager[i].second, graphs[i].second, 1e-4) << dev.str() << " token " << i;
    }
  }
}

// The deliberate bug: reading the model's output on the host without copying it off the device.
TEST(Worker, AHostReadOfDeviceLogitsDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto weights = model::open_weights(params().model_path);
  const model::LlamaModel m(*weights, {}, nullptr, default_allocator(Device::guarded(0)));
  model::LocalRunner runner(m, {.num_blocks = 8, .block_size = kBlockSize});
  const int seq = runner.add_sequence();
  const std::vector<int32_t> prompt{3, 1, 4, 1, 5};
  const model::LocalRunner::Chunk chunk{.seq = seq, .tokens = prompt};
  const Tensor logits = runner.step({&chunk, 1});
  ASSERT_EQ(logits.device(), Device::guarded(0));
  const Tensor host = to_host(logits);  // the right way
  for (int64_t i = 0; i < host.numel(); ++i) ASSERT_TRUE(std::isfinite(host.data_as<float>()[i]));
  EXPECT_EXIT(
      {
        volatile float first = logits.data_as<float>()[0];  // the bug
        (void)first;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

}  // namespace
}  // namespace tessera::worker
