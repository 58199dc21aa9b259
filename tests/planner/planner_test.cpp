// The planner against figures worked by hand from the published configs of Llama-2-70B and
// Llama-3.1-405B (bf16, context 4096, batch 1, 80 GB GPUs at 90% = 72e9 usable bytes, prefill
// chunk 2048). The arithmetic in the comments is done from the configs, not by the code.
#include "tessera/planner/planner.h"

#include <gtest/gtest.h>

#if TESSERA_HAVE_JSON

#include <nlohmann/json.hpp>

#include "../model/safetensors_writer.h"
#include "tessera/core/error.h"

namespace tessera::planner {
namespace {

using model::testing::TempDir;
using model::testing::write_file;

// meta-llama/Llama-2-70b-hf config.json (the fields that matter).
const char* kLlama2_70b = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
  "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80,
  "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "torch_dtype": "float16"})";

// meta-llama/Llama-3.1-405B config.json.
const char* kLlama31_405b = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16384,
  "intermediate_size": 53248, "num_attention_heads": 128, "num_hidden_layers": 126,
  "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";

ModelSpec spec_of(const TempDir& dir, const char* config, const std::string& dtype = "bf16") {
  const auto path = dir.path() / "config.json";
  write_file(path, std::string(config));
  return load_model_spec(path.string(), dtype);
}

const Layout& find(const Plan& plan, int t, int p) {
  for (const Layout& l : plan.layouts)
    if (l.tensor == t && l.pipeline == p) return l;
  ADD_FAILURE() << "no layout T=" << t << " P=" << p;
  static const Layout none;
  return none;
}

// Llama-2-70B parameters:
//   embedding 32000*8192 = 262,144,000; LM head the same (untied); final norm 8192.
//   per layer: q 8192*8192 = 67,108,864; o the same; k 8192*(8*128) = 8,388,608; v the same;
//   gate/up/down 8192*28672 = 234,881,024 each (704,643,072); norms 2*8192 = 16,384.
//   layer = 134,217,728 + 16,777,216 + 704,643,072 + 16,384 = 855,654,400; x80 = 68,452,352,000.
//   total = 68,452,352,000 + 524,288,000 + 8,192 = 68,976,648,192 (the published 69.0B).
TEST(Planner, Llama2_70bParameterCount) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama2_70b);
  EXPECT_EQ(parameter_count(m.config), 68'976'648'192ull);
  EXPECT_EQ(m.weights.total(), 2 * 68'976'648'192ull);  // bf16
  EXPECT_EQ(spec_of(dir, kLlama2_70b, "int4").weights.total(), 68'976'648'192ull / 2);
  EXPECT_EQ(spec_of(dir, kLlama2_70b, "f32").weights.total(), 4 * 68'976'648'192ull);
}

TEST(Planner, Llama2_70bOn8Gpus) {
  TempDir dir;
  const Plan plan = make_plan(spec_of(dir, kLlama2_70b), {.gpus = 8});
  ASSERT_EQ(plan.layouts.size(), 4u);  // (8,1) (4,2) (2,4) (1,8): all allowed
  EXPECT_TRUE(plan.rejected.empty());
  const Layout& l = find(plan, 8, 1);
  // Per GPU, per layer: q/8 + o/8 = 16,777,216; one KV head each of k, v: 2*8192*128 =
  // 2,097,152; MLP/8 = 88,080,384; norms 16,384 -> 106,971,136; x80 = 8,557,690,880.
  // + embedding/8 + head/8 = 65,536,000 + final norm 8,192 = 8,623,235,072 params = 17.25 GB.
  EXPECT_EQ(l.weight_bytes_per_gpu, 17'246'470'144ull);
  EXPECT_EQ(l.kv_heads_per_rank, 1);
  // KV: 2 * 80 layers * 1 head * 128 * 2 bytes = 40,960 per token; x4096 = 167,772,160.
  EXPECT_EQ(l.kv_bytes_per_token, 40'960ull);
  EXPECT_EQ(l.kv_bytes_per_gpu, 167'772'160ull);
  // Activations, M = 2048: residual 2*2048*8192*2 = 67,108,864; attention
  // 2048*(2*1024 + 2*128)*2 = 9,437,184 < MLP 2*2048*3584*2 = 29,360,128; logits 4000*4 =
  // 16,000 -> 96,484,992.
  EXPECT_EQ(l.activation_bytes_per_gpu, 96'484'992ull);
  EXPECT_EQ(l.total_bytes_per_gpu, 17'246'470'144ull + 167'772'160ull + 96'484'992ull);
  // KV tokens: (72e9 - 17,246,470,144 - 96,484,992) / 40,960 = 1,334,400.5 -> 1,334,400.
  EXPECT_EQ(l.kv_tokens, 1'334'400ull);
  // Comm: a hidden state is 16,384 bytes; a ring all-reduce over 8 sends 2*7*2048 = 28,672;
  // 2*80 + 1 = 161 of them = 4,616,192; logits all-gather 7 * 4000 * 4 = 112,000.
  EXPECT_EQ(l.allreduces_per_token, 161);
  EXPECT_EQ(l.comm_tp_bytes_per_token, 4'728'192ull);
  EXPECT_EQ(l.comm_pp_bytes_per_token, 0ull);
  EXPECT_EQ(l.comm_bytes_per_token, 4'728'192ull);
  EXPECT_TRUE(l.fits);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 8);
  EXPECT_EQ(plan.recommended->pipeline, 1);
  EXPECT_NE(plan.reason.find("no pipeline bubbles"), std::string::npos) << plan.reason;
  EXPECT_NE(plan.reason.find("within one 8-GPU node"), std::string::npos) << plan.reason;
  // T=1 P=8: 10 layers per stage, all 8 KV heads: 2*10*8*128*2*4096 = 167,772,160 as well;
  // PP comm 7 boundaries * 16,384 = 114,688 and no TP traffic.
  const Layout& pp8 = find(plan, 1, 8);
  EXPECT_EQ(pp8.layers_per_stage, 10);
  EXPECT_EQ(pp8.kv_bytes_per_gpu, 167'772'160ull);
  EXPECT_EQ(pp8.comm_bytes_per_token, 114'688ull);
}

TEST(Planner, Llama2_70bOn4Gpus) {
  TempDir dir;
  const Plan plan = make_plan(spec_of(dir, kLlama2_70b), {.gpus = 4});
  ASSERT_EQ(plan.layouts.size(), 3u);
  const Layout& l = find(plan, 4, 1);
  // Per layer: q/4 + o/4 = 33,554,432; 2 KV heads of k, v = 2*8192*256 = 4,194,304; MLP/4 =
  // 176,160,768; norms 16,384 -> 213,925,888; x80 = 17,114,071,040; + embedding/4 + head/4 =
  // 131,072,000; + 8,192 -> 17,245,151,232 params = 34,490,302,464 bytes. (Check: a quarter of
  // 137,953,296,384 = 34,488,324,096, plus 3/4 of the 1,318,912 norm params again at 2 bytes.)
  EXPECT_EQ(l.weight_bytes_per_gpu, 34'490'302'464ull);
  // KV: 2*80*2*128*2*4096 = 335,544,320.
  EXPECT_EQ(l.kv_bytes_per_gpu, 335'544'320ull);
  // Activations: 67,108,864 + MLP 2*2048*7168*2 = 58,720,256 + logits 8000*4 = 32,000.
  EXPECT_EQ(l.activation_bytes_per_gpu, 125'861'120ull);
  // All-reduce over 4: 2*3*4096 = 24,576; x161 = 3,956,736; logits 3*8000*4 = 96,000.
  EXPECT_EQ(l.comm_bytes_per_token, 4'052'736ull);
  // T=2 P=2: TP part 161 * 2*1*8192 + 1*16000*4 = 2,701,824, plus one boundary of 16,384.
  const Layout& l22 = find(plan, 2, 2);
  EXPECT_EQ(l22.comm_tp_bytes_per_token, 2'701'824ull);
  EXPECT_EQ(l22.comm_pp_bytes_per_token, 16'384ull);
  EXPECT_EQ(l22.layers_per_stage, 40);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 4);
}

// The textbook case of docs/operators.md: Llama-2-70B in bf16 on 4 GPUs (989 TFLOP/s, 3,350 GB/s)
// joined at 100 GB/s (800 Gbit/s) with 5 us per message, batch 1, context 4096, 2048-token prompt.
// TP=4, one stage of 34,490,302,464 bytes = 17,245,151,232 params; KV 81,920 bytes per token.
//   decode compute: (34,490,302,464 + 4096 * 81,920) / 3.35e12 = 10.395775 ms
//                   + (2 * 17,245,151,232 + 4 * 4096 * 2048 * 80) / 989e12 = 0.037588 ms
//                   -> 10.433363
//   decode comm: 161 all-reduces of 16,384 B over 4: 6 * (5 us + 4096 / 1e11 s) = 30.24576 us
//                -> 4.869567 ms; logits all-gather 3 * (5 us + 32,000 / 1e11 s) = 0.01596 ms
//                -> 4.885527 ms; no overlap 15.318891 ms, overlapped max(...) = 10.433363 ms
//   prefill: 10.295613 ms of weights + 72.011669e12 FLOPs / 989e12 = 72.811455 ms -> 83.107068;
//            161 all-reduces of 2048 * 16,384 B: 6 * (5 us + 83.88608 us) -> 85.863953 ms + 0.01596
// TP=2 x PP=2, stages of 40 layers (34,488,975,360 and 34,488,991,744 bytes):
//   decode compute 2 x 10.432968 = 20.865936 ms; comm (81 + 80) * 2 * (5 us + 81.92 ns) +
//   logits 5.64 us + one hop 5.16384 us = 1.647182 ms -> 22.513119 ms, overlapped 20.871100 ms.
// At batch 1 TP=4 is the faster layout (its weight reads run in parallel on 4 GPUs; PP's stages
// read theirs one after another), although it sends 4,052,736 bytes per token against 2,718,208.
TEST(Planner, TimeModelLlama2_70bOn4GpusAt100GBs) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama2_70b);
  const Plan plan = make_plan(m, {.gpus = 4,
                                  .interconnect_gbps = 800,
                                  .latency_us = 5,
                                  .gpu_tflops = 989,
                                  .gpu_mem_bw_gbs = 3350});
  const Layout& tp4 = find(plan, 4, 1);
  ASSERT_TRUE(tp4.time);
  EXPECT_NEAR(tp4.time->decode_compute_ms, 10.433363, 1e-5);
  EXPECT_NEAR(tp4.time->decode_comm_ms, 4.885527, 1e-5);
  EXPECT_NEAR(tp4.time->decode_ms, 15.318891, 1e-5);
  EXPECT_NEAR(tp4.time->decode_overlap_ms, 10.433363, 1e-5);
  EXPECT_NEAR(tp4.time->prefill_compute_ms, 83.107068, 1e-5);
  EXPECT_NEAR(tp4.time->prefill_comm_ms, 85.879913, 1e-5);
  EXPECT_NEAR(tp4.time->prefill_overlap_ms, 85.879913, 1e-5);
  const Layout& tp2pp2 = find(plan, 2, 2);
  ASSERT_TRUE(tp2pp2.time);
  EXPECT_NEAR(tp2pp2.time->decode_compute_ms, 20.865936, 1e-5);
  EXPECT_NEAR(tp2pp2.time->decode_comm_ms, 1.647182, 1e-5);
  EXPECT_NEAR(tp2pp2.time->decode_ms, 22.513119, 1e-5);
  EXPECT_NEAR(tp2pp2.time->decode_overlap_ms, 20.871100, 1e-5);
  EXPECT_LT(tp4.time->decode_ms, tp2pp2.time->decode_ms);
  // Without an interconnect there is no estimate; a slower link only adds communication time.
  EXPECT_FALSE(find(make_plan(m, {.gpus = 4}), 4, 1).time);
  const Plan slow = make_plan(m, {.gpus = 4, .interconnect_gbps = 80});
  EXPECT_NEAR(find(slow, 4, 1).time->decode_compute_ms, 10.433363, 1e-5);
  EXPECT_GT(find(slow, 4, 1).time->decode_comm_ms, tp4.time->decode_comm_ms);
  EXPECT_THROW(make_plan(m, {.gpus = 4, .interconnect_gbps = 800, .gpu_tflops = 0}), Error);
}

TEST(Planner, Llama2_70bOn2Gpus) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama2_70b);
  const Plan plan = make_plan(m, {.gpus = 2});
  ASSERT_EQ(plan.layouts.size(), 2u);
  // T=2: half of 137,953,296,384 plus a second copy of the replicated norms' half:
  // 68,976,648,192 + (80*16,384 + 8,192) = 68,977,967,104. KV 2*80*4*128*2*4096 = 671,088,640.
  // Activations: 67,108,864 + MLP 2*2048*14336*2 = 117,440,512 + logits 16000*4 = 64,000.
  const Layout& t2 = find(plan, 2, 1);
  EXPECT_EQ(t2.weight_bytes_per_gpu, 68'977'967'104ull);
  EXPECT_EQ(t2.kv_bytes_per_gpu, 671'088'640ull);
  EXPECT_EQ(t2.activation_bytes_per_gpu, 184'613'376ull);
  EXPECT_EQ(t2.total_bytes_per_gpu, 69'833'669'120ull);  // < 72e9: fits, 2.17 GB spare
  EXPECT_TRUE(t2.fits);
  EXPECT_EQ(t2.spare_bytes, 72'000'000'000ll - 69'833'669'120ll);
  // T=1 P=2: the last stage holds 40 layers = 34,226,176,000 + head 262,144,000 + norm 8,192 =
  // 34,488,328,192 params (the first: 34,488,320,000). KV 2*40*8*128*2*4096 = 671,088,640;
  // activations 67,108,864 + 234,881,024 + logits 128,000 = 302,117,888.
  const Layout& p2 = find(plan, 1, 2);
  EXPECT_EQ(p2.weight_bytes_per_gpu, 68'976'656'384ull);
  EXPECT_EQ(p2.kv_bytes_per_gpu, 671'088'640ull);
  EXPECT_EQ(p2.activation_bytes_per_gpu, 302'117'888ull);
  EXPECT_EQ(p2.comm_bytes_per_token, 16'384ull);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 2);

  // Batch 8: KV 8x; T=2 P=1 needs 68,977,967,104 + 5,368,709,120 + (67,108,864 + 117,440,512 +
  // 8*64,000) = 74,531,737,600 and T=1 P=2 74,648,379,392: nothing fits, T=2 over by
  // 2,531,737,600.
  const Plan big = make_plan(m, {.gpus = 2, .batch = 8});
  EXPECT_FALSE(find(big, 2, 1).fits);
  EXPECT_FALSE(find(big, 1, 2).fits);
  ASSERT_TRUE(big.recommended);
  EXPECT_FALSE(big.recommended->fits);
  EXPECT_EQ(big.recommended->tensor, 2);
  EXPECT_EQ(big.recommended->total_bytes_per_gpu, 74'531'737'600ull);
  EXPECT_EQ(big.recommended->spare_bytes, -2'531'737'600ll);
  EXPECT_NE(big.reason.find("nothing fits"), std::string::npos) << big.reason;
  EXPECT_NE(big.reason.find("2.53 GB over"), std::string::npos) << big.reason;
}

// Llama-3.1-405B: per layer q, o 16384*16384 = 268,435,456 each; k, v 16384*1024 = 16,777,216
// each; gate/up/down 16384*53248 = 872,415,232 each; norms 32,768 -> 3,187,703,808; x126 =
// 401,650,679,808; embedding and head 128256*16384 = 2,101,346,304 each; final norm 16,384;
// total 405,853,388,800.
TEST(Planner, Llama31_405bOn16Gpus) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama31_405b);
  EXPECT_EQ(parameter_count(m.config), 405'853'388'800ull);
  const Plan plan = make_plan(m, {.gpus = 16});  // 8 GPUs per node by default
  // T=16 P=1 would put tensor parallelism across two nodes.
  ASSERT_EQ(plan.rejected.size(), 1u);
  EXPECT_EQ(plan.rejected[0].tensor, 16);
  EXPECT_NE(plan.rejected[0].reason.find("cross nodes"), std::string::npos);
  ASSERT_EQ(plan.layouts.size(), 4u);  // (8,2) (4,4) (2,8) (1,16)
  const Layout& l = find(plan, 8, 2);
  // 63 layers per stage; per layer per GPU: (q+o)/8 = 67,108,864; one KV head of k, v =
  // 2*16384*128 = 4,194,304; MLP/8 = 327,155,712; norms 32,768 -> 398,491,648; x63 =
  // 25,104,973,824. Last stage: + head/8 = 262,668,288 + norm 16,384 = 25,367,658,496 params.
  EXPECT_EQ(l.layers_per_stage, 63);
  EXPECT_EQ(l.weight_bytes_per_gpu, 50'735'316'992ull);
  // KV: 2*63*1*128*2*4096 = 132,120,576.
  EXPECT_EQ(l.kv_bytes_per_gpu, 132'120'576ull);
  // Activations: residual 2*2048*16384*2 = 134,217,728; MLP 2*2048*6656*2 = 54,525,952 >
  // attention 2048*(2*2048 + 2*128)*2 = 17,825,792; logits 16032*4 = 64,128.
  EXPECT_EQ(l.activation_bytes_per_gpu, 188'807'808ull);
  EXPECT_EQ(l.total_bytes_per_gpu, 51'056'245'376ull);
  EXPECT_TRUE(l.fits);
  // Comm: hidden 32,768 bytes; all-reduce over 8 = 2*7*4096 = 57,344; x(2*126 + 1 = 253) =
  // 14,508,032; logits 7*16032*4 = 448,896; one boundary 32,768.
  EXPECT_EQ(l.comm_tp_bytes_per_token, 14'956'928ull);
  EXPECT_EQ(l.comm_pp_bytes_per_token, 32'768ull);
  EXPECT_EQ(l.comm_bytes_per_token, 14'989'696ull);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 8);
  EXPECT_EQ(plan.recommended->pipeline, 2);
  EXPECT_NE(plan.reason.find("cross nodes"), std::string::npos) << plan.reason;

  // One 16-GPU node: T=16 is allowed (8 KV heads, each on 2 ranks) and needs no pipeline:
  // per layer (q+o)/16 = 33,554,432 + k, v one head 4,194,304 + MLP/16 = 163,577,856 + 32,768 =
  // 201,359,360; x126 = 25,371,279,360; + (embedding + head)/16 = 262,668,288 + 16,384 ->
  // 25,633,964,032 params.
  const Plan one_node = make_plan(m, {.gpus = 16, .gpus_per_node = 16});
  ASSERT_TRUE(one_node.recommended);
  EXPECT_EQ(one_node.recommended->tensor, 16);
  EXPECT_EQ(one_node.recommended->weight_bytes_per_gpu, 51'267'928'064ull);
  EXPECT_EQ(one_node.recommended->kv_bytes_per_gpu, 264'241'152ull);  // 2*126*128*2*4096
}

TEST(Planner, Llama31_405bDoesNotFitOn8Gpus) {
  TempDir dir;
  const Plan plan = make_plan(spec_of(dir, kLlama31_405b), {.gpus = 8});
  // T=8 P=1: 398,491,648 * 126 + 2 * 262,668,288 + 16,384 = 50,735,300,608 params = 101.5 GB.
  EXPECT_EQ(find(plan, 8, 1).weight_bytes_per_gpu, 101'470'601'216ull);
  for (const Layout& l : plan.layouts) EXPECT_FALSE(l.fits);
  ASSERT_TRUE(plan.recommended);
  EXPECT_FALSE(plan.recommended->fits);
  EXPECT_NE(plan.reason.find("nothing fits"), std::string::npos);
}

// mistralai/Mixtral-8x7B-v0.1 config.json.
const char* kMixtral8x7b = R"({
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
  "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
  "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "tie_word_embeddings": false})";

// Qwen/Qwen3-30B-A3B config.json.
const char* kQwen3_30bA3b = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
  "intermediate_size": 6144, "moe_intermediate_size": 768, "num_attention_heads": 32,
  "num_hidden_layers": 48, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
  "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1,
  "mlp_only_layers": [], "vocab_size": 151936, "max_position_embeddings": 40960,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false,
  "attention_bias": false})";

const Layout& find_ep(const Plan& plan, int t, int e, int p) {
  for (const Layout& l : plan.layouts)
    if (l.tensor == t && l.expert == e && l.pipeline == p) return l;
  ADD_FAILURE() << "no layout T=" << t << " E=" << e << " P=" << p;
  static const Layout none;
  return none;
}

// Mixtral-8x7B parameters:
//   per layer: q, o 2*4096*4096 = 33,554,432; k, v 2*4096*1024 = 8,388,608; experts
//   8*3*4096*14336 = 1,409,286,144; router 4096*8 = 32,768; norms 8,192 -> 1,451,270,144;
//   x32 = 46,440,644,608; + embedding and head 2*32000*4096 = 262,144,000 + final norm 4,096
//   = 46,702,792,704 (the published 46.7B).
TEST(Planner, Mixtral8x7bOn8Gpus) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kMixtral8x7b);
  EXPECT_EQ(parameter_count(m.config), 46'702'792'704ull);
  const Plan plan = make_plan(m, {.gpus = 8});
  // Every E x T split of 8 / P: P = 1 (4 layouts), 2 (3), 4 (2), 8 (1); nothing refused.
  EXPECT_EQ(plan.layouts.size(), 10u);
  EXPECT_TRUE(plan.rejected.empty());
  // TP=2 x EP=4: 2 experts per EP group, each TP rank half of their width; both TP ranks of a
  // group exchange their own copy of the rows: 32 * 3 * (1 - C(6,2)/C(8,2)) * 16,400 * 2.
  const Layout& tp_ep = find_ep(plan, 2, 4, 1);
  EXPECT_EQ(tp_ep.experts_per_rank, 2);
  EXPECT_EQ(tp_ep.a2a_bytes_per_token, 1'461'943ull);
  EXPECT_EQ(tp_ep.comm_bytes_per_token, tp_ep.comm_tp_bytes_per_token + 1'461'943ull);

  const Layout& ep = find_ep(plan, 1, 8, 1);
  // Per GPU, per layer: attention whole 41,943,040 + one expert 3*4096*14336 = 176,160,768 +
  // router and norms 40,960 = 218,144,768; x32 = 6,980,632,576; + embedding and head
  // 262,144,000 + 4,096 = 7,242,780,672 params = 14,485,561,344 bytes.
  EXPECT_EQ(ep.experts_per_rank, 1);
  EXPECT_EQ(ep.weight_bytes_per_gpu, 14'485'561'344ull);
  // Attention is replicated: all 8 KV heads, 2*32*8*128*2 = 131,072 bytes per token.
  EXPECT_EQ(ep.kv_bytes_per_gpu, 131'072ull * 4096);
  // Activations, M = 2048: residual 33,554,432; attention 2048*(2*4096 + 2*1024)*2 = 41,943,040
  // < MoE 2048*(2*2*14336)*2 = 234,881,024 + router logits 2048*8*4 = 65,536; logits 128,000.
  EXPECT_EQ(ep.activation_bytes_per_gpu, 33'554'432ull + 234'946'560ull + 128'000ull);
  // Data-parallel attention (the default): a token's 2 experts avoid one given other rank with
  // probability C(7,2)/C(8,2) = 21/28, so it goes to D = 7 * 7/28 = 1.75 other ranks per layer,
  // each way 8,192 bytes (+ 2 ids and 2 weights, 16 bytes, on the way out): 32 * 1.75 * 16,400.
  EXPECT_DOUBLE_EQ(a2a_remote_ranks(8, 2, 8), 1.75);
  EXPECT_EQ(ep.allreduces_per_token, 0);
  EXPECT_EQ(ep.a2a_bytes_per_token, 918'400ull);
  EXPECT_EQ(ep.comm_ep_bytes_per_token, 918'400ull);
  EXPECT_EQ(ep.comm_tp_bytes_per_token, 0ull);
  EXPECT_EQ(ep.comm_bytes_per_token, 918'400ull);
  // Replicated attention: one ring all-reduce over 8 per layer of a 8,192-byte hidden state:
  // 2*7*1,024 = 14,336; x32 = 458,752.
  EXPECT_EQ(ep.ep_allreduce_bytes_per_token, 458'752ull);
  const Plan rep = make_plan(m, {.gpus = 8, .expert_data_attention = false});
  const Layout& rep_ep = find_ep(rep, 1, 8, 1);
  EXPECT_EQ(rep_ep.allreduces_per_token, 32);
  EXPECT_EQ(rep_ep.comm_bytes_per_token, 458'752ull);
  EXPECT_NE(rep.reason.find("one all-reduce per MoE layer instead of two"), std::string::npos)
      << rep.reason;

  const Layout& tp = find_ep(plan, 8, 1, 1);
  // TP=8: attention/8 4,194,304 + one KV head each 1,048,576 + experts split by width
  // 176,160,768 + 40,960 = 181,444,608; x32 = 5,806,227,456; + 32,768,000 + 4,096.
  EXPECT_EQ(tp.weight_bytes_per_gpu, 2 * 5'838'999'552ull);
  // 65 all-reduces of 14,336 = 931,840 + logits all-gather 7*4000*4 = 112,000.
  EXPECT_EQ(tp.comm_bytes_per_token, 1'043'840ull);
  EXPECT_EQ(tp.a2a_bytes_per_token, 0ull);

  // Both fit at P = 1; EP sends fewer bytes per token and is the pick.
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->expert, 8);
  EXPECT_EQ(plan.recommended->pipeline, 1);
  EXPECT_NE(plan.reason.find("only to its experts' ranks and back"), std::string::npos)
      << plan.reason;
  // Each of the 8 ranks holds its own sequences' KV: 8 x what one GPU's spare memory holds.
  EXPECT_EQ(ep.kv_tokens, 8 * rep_ep.kv_tokens);
  EXPECT_NE(plan.reason.find("room for " + std::to_string(ep.kv_tokens) + " tokens in all"),
            std::string::npos)
      << plan.reason;
  EXPECT_NE(rep.reason.find("whole KV cache"), std::string::npos) << rep.reason;
}

// Qwen3-30B-A3B parameters:
//   per layer: q, o 2*2048*4096 = 16,777,216; k, v 2*2048*512 = 2,097,152; experts
//   128*3*2048*768 = 603,979,776; router 2048*128 = 262,144; norms 4,096; q/k norms 256 ->
//   623,120,640; x48 = 29,909,790,720; + embedding and head 2*151936*2048 = 622,329,856 + 2,048
//   = 30,532,122,624 (the published 30.5B).
TEST(Planner, Qwen3_30bA3bOn4Gpus) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kQwen3_30bA3b);
  EXPECT_EQ(parameter_count(m.config), 30'532'122'624ull);
  const Plan plan = make_plan(m, {.gpus = 4});
  const Layout& ep = find_ep(plan, 1, 4, 1);
  // 32 experts each: 150,994,944 + attention 18,874,368 + 266,496 replicated = 170,135,808;
  // x48 = 8,166,518,784; + 622,329,856 + 2,048 = 8,788,850,688 params.
  EXPECT_EQ(ep.experts_per_rank, 32);
  EXPECT_EQ(ep.weight_bytes_per_gpu, 2 * 8'788'850'688ull);
  // Replicated attention: 48 all-reduces over 4 of 4,096 bytes: 2*3*1,024 = 6,144 each.
  EXPECT_EQ(ep.ep_allreduce_bytes_per_token, 48ull * 6'144);
  // All-to-all: 8 of 128 experts all avoid one other rank's 32 with probability
  // C(96,8)/C(128,8) = 0.0927, so D = 3 * 0.9073 = 2.7218; 48 * D * (2 * 4,096 + 64).
  EXPECT_NEAR(a2a_remote_ranks(128, 8, 4), 2.72176, 1e-5);
  EXPECT_EQ(ep.a2a_bytes_per_token, 1'078'601ull);
  EXPECT_EQ(ep.comm_bytes_per_token, 1'078'601ull);
  // TP=4 sends a little less: 97 all-reduces of 6,144 = 595,968 + logits all-gather
  // 3 * 37,984 * 4 = 455,808, so by bytes per token it is the pick; with replicated attention
  // EP=4's 294,912 bytes win.
  const Layout& tp = find_ep(plan, 4, 1, 1);
  EXPECT_EQ(tp.comm_bytes_per_token, 1'051'776ull);
  ASSERT_TRUE(plan.recommended);
  EXPECT_EQ(plan.recommended->tensor, 4);
  const Plan rep = make_plan(m, {.gpus = 4, .expert_data_attention = false});
  ASSERT_TRUE(rep.recommended);
  EXPECT_EQ(rep.recommended->expert, 4);
  // The model reads the same config: qwen3 attention (per-head q/k norm) with experts.
  const auto c = model::config_from_hf(nlohmann::json::parse(kQwen3_30bA3b));
  EXPECT_EQ(c.architecture, "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.num_experts, 128);
}

TEST(Planner, ExpertLayoutRules) {
  TempDir dir;
  const ModelSpec mix = spec_of(dir, kMixtral8x7b);
  EXPECT_FALSE(layout_problem(mix.config, {.gpus = 4}, 1, 1, 4));
  EXPECT_TRUE(layout_problem(mix.config, {.gpus = 3, .gpus_per_node = 3}, 1, 1, 3));  // 8 % 3
  EXPECT_FALSE(layout_problem(mix.config, {.gpus = 4}, 2, 1, 2));                     // EP x TP
  EXPECT_TRUE(layout_problem(mix.config, {.gpus = 8, .gpus_per_node = 4}, 2, 1, 4));  // 8 > 4
  EXPECT_TRUE(layout_problem(mix.config, {.gpus = 8, .gpus_per_node = 4}, 1, 1, 8));  // nodes
  // A dense model never gets E > 1 layouts.
  const ModelSpec dense = spec_of(dir, kLlama2_70b);
  EXPECT_TRUE(layout_problem(dense.config, {.gpus = 2}, 1, 1, 2));
  for (const Layout& l : make_plan(dense, {.gpus = 8}).layouts) EXPECT_EQ(l.expert, 1);
}

TEST(Planner, RejectsLayoutsThatBreakTheRules) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama2_70b);
  const PlanParams p{.gpus = 6, .gpus_per_node = 6};
  EXPECT_FALSE(layout_problem(m.config, p, 2, 3));
  EXPECT_TRUE(layout_problem(m.config, p, 3, 2));  // 64 heads
  EXPECT_TRUE(layout_problem(m.config, p, 6, 1));
  EXPECT_TRUE(layout_problem(m.config, p, 2, 2));  // 4 != 6 GPUs
  const PlanParams many{.gpus = 160};
  EXPECT_TRUE(layout_problem(m.config, many, 1, 160));  // 160 stages > 80 layers
  EXPECT_FALSE(layout_problem(m.config, many, 2, 80));
  // 12 heads with 4 KV heads: T=6 splits neither way (6 % 4, 4 % 6).
  model::ModelConfig c = m.config;
  c.num_heads = 12;
  c.num_kv_heads = 4;
  EXPECT_TRUE(layout_problem(c, {.gpus = 6}, 6, 1));
  EXPECT_FALSE(layout_problem(c, {.gpus = 12, .gpus_per_node = 12}, 12, 1));
}

TEST(Planner, BadParamsAndDtypes) {
  TempDir dir;
  const ModelSpec m = spec_of(dir, kLlama2_70b);
  EXPECT_THROW(make_plan(m, {.gpus = 0}), Error);
  EXPECT_THROW(make_plan(m, {.gpus = 2, .gpu_memory_utilization = 1.5}), Error);
  EXPECT_THROW(make_plan(m, {.gpus = 2, .context = -1}), Error);
  EXPECT_THROW(dtype_bits("int3"), Error);
  EXPECT_EQ(dtype_bits("fp8"), 8);
  // An 8-bit KV cache halves the KV bytes.
  EXPECT_EQ(make_plan(m, {.gpus = 8, .kv_bits = 8}).layouts[0].kv_bytes_per_gpu, 83'886'080ull);
}

// Random configs: with T = P = 1 the GPU holds exactly the whole inventory and the whole KV
// cache; with more GPUs the reported (largest) stage holds at least an even share of everything.
// Its weights alone may be less than an even share: the largest stage by total can be one with
// an extra layer of KV cache while the last stage carries the LM head.
TEST(Planner, RandomConfigsConserveBytes) {
  std::mt19937 rng(std::random_device{}());
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int iter = 0; iter < 50; ++iter) {
    model::ModelConfig c;
    c.architecture = "llama";
    c.num_kv_heads = 1 << pick(0, 3);
    c.num_heads = c.num_kv_heads * (1 << pick(0, 3));
    c.head_dim = 2 * pick(4, 64);
    c.hidden_size = c.num_heads * c.head_dim;
    c.intermediate_size = pick(1, 64) * 32;
    c.vocab_size = pick(100, 70000);
    c.num_layers = pick(1, 40);
    c.tied_embeddings = pick(0, 1);
    const ModelSpec m{.config = c, .weights = inventory_from_config(c, 16)};
    const int context = pick(1, 8192), batch = pick(1, 16);
    const Layout one = evaluate(m, {.gpus = 1, .context = context, .batch = batch}, 1, 1);
    EXPECT_EQ(one.weight_bytes_per_gpu, m.weights.total());
    EXPECT_EQ(one.kv_bytes_per_gpu,
              2ull * c.num_layers * c.num_kv_heads * c.head_dim * 2 * context * batch);
    const int gpus = 1 << pick(1, 4);
    const Plan plan = make_plan(m, {.gpus = gpus, .context = context, .batch = batch});
    for (const Layout& l : plan.layouts) {
      EXPECT_GE(l.total_bytes_per_gpu * gpus, m.weights.total()) << l.tensor << "x" << l.pipeline;
      EXPECT_LE(l.weight_bytes_per_gpu, m.weights.total());
      EXPECT_EQ(l.comm_tp_bytes_per_token == 0, l.tensor == 1);
      EXPECT_EQ(l.comm_pp_bytes_per_token, uint64_t(l.pipeline - 1) * c.hidden_size * 2);
    }
  }
}

}  // namespace
}  // namespace tessera::planner

#endif  // TESSERA_HAVE_JSON
