#include "tessera/worker/worker.h"

#include <algorithm>
#include <string_view>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/core/progress.h"
#include "tessera/model/step_batch.h"
#include "tessera/ops/backend.h"

namespace tessera::worker {
namespace {
// "stage 1 tp 0" (and "ep 1" under expert parallelism), as the group's logs name ranks.
std::string fmt_rank(const model::ShardSpec& s) {
  std::string r = "stage " + std::to_string(s.stage) + " tp " + std::to_string(s.tp_rank);
  if (s.ep_size > 1) r += " ep " + std::to_string(s.ep_rank);
  return r;
}
}  // namespace

GraphMode parse_graph_mode(const std::string& s) {
  if (s == "auto") return GraphMode::kAuto;
  if (s == "off") return GraphMode::kOff;
  if (s == "on") return GraphMode::kOn;
  fail(ErrorCode::kInvalidArgument, "decode graphs: '", s, "' is not one of auto, on, off");
}

const char* graph_mode_name(GraphMode m) {
  return m == GraphMode::kOn ? "on" : m == GraphMode::kOff ? "off" : "auto";
}

Worker::Worker(const WorkerParams& p, comm::Communicator* tp, comm::Communicator* pp,
               comm::Communicator* ep)
    : pp_(pp), device_(p.allocator ? p.allocator : ops::make_allocator(p.device)) {
  if (device_->device().type != p.device.type ||
      (p.device.is_cuda() && device_->device().index != p.device.index))
    fail(ErrorCode::kInvalidArgument, "worker for ", p.device.str(), " given an allocator of ",
         device_->device().str());
  for (auto [kind, c] : {std::pair{"tp", tp}, {"pp", pp}, {"ep", ep}})
    if (c) comms_.emplace_back(kind, c);
  if (p.device.type != DeviceType::kCUDA) {
    ops::cpu::set_activations(p.cpu_activations);
    const bool int8 = p.cpu_activations == ops::cpu::Activations::kInt8;
    // Which kernels will run: the ISA, and whether weights get packed 8 rows at a time
    // (only the int8 path packs, and only where an integer SIMD kernel exists).
    TESSERA_LOG_INFO(
        "cpu matmul: {} activations for Q4_0..Q8_0 and Q2_K..Q6_K weights, {} kernels{}",
        ops::cpu::activations_name(p.cpu_activations),
        int8 ? ops::cpu::int8_isa() : ops::cpu::simd_level(),
        int8 && ops::cpu::pack_weights() && std::string_view(ops::cpu::int8_isa()) != "scalar"
            ? ", Q4_0..Q8_0, Q4_K, Q5_K, Q6_K weights packed 8 rows interleaved"
            : "");
  }
  // Start-up progress: a bar for a lone rank on a terminal; ranks of a group share the terminal
  // with each other, so they log lines (named by rank) instead of fighting over one line.
  const auto& sh = p.shard;
  const bool grouped = sh.tp_size > 1 || sh.num_stages > 1 || sh.ep_size > 1;
  const ProgressStyle style = grouped && progress_style_for_stderr() == ProgressStyle::kBar
                                  ? ProgressStyle::kLines
                                  : progress_style_for_stderr();
  const std::string who = grouped ? fmt_rank(sh) + ": " : std::string();
  weights_ = model::open_weights(p.model_path);
  {
    ProgressReporter progress(who + "weights to " + p.device.str(), 0, ProgressUnit::kBytes, style);
    model_ =
        std::make_unique<model::LlamaModel>(*weights_, p.shard, tp, device_, ep, progress.fn());
    progress.finish();
  }
  model_->check_device_support();
  if (p.shard.num_stages > 1 &&
      (!pp_ || pp_->size() != p.shard.num_stages || pp_->rank() != p.shard.stage))
    fail(ErrorCode::kInvalidArgument, "pipeline stage ", p.shard.stage, " of ", p.shard.num_stages,
         " needs a PP communicator of that size and rank");
  kv_cache::KvPoolParams kp = model_->kv_shape(p.block_size);
  kp.num_blocks = p.num_blocks;
  kp.dtype = p.kv_cache_dtype;
  if (kp.num_blocks == 0) kp.num_blocks = kv_cache::KvPool::blocks_for_budget(kp, p.kv_cache_bytes);
  if (kp.num_blocks <= 0)
    fail(ErrorCode::kResourceExhausted, "KV cache budget of ", p.kv_cache_bytes,
         " bytes holds no block of ", p.block_size, " tokens");
  {
    ProgressReporter progress(who + "KV cache (" + std::to_string(kp.num_blocks) + " blocks of " +
                                  std::to_string(kp.block_size) + " tokens, " +
                                  std::string(dtype_name(kp.dtype)) + ")",
                              0, ProgressUnit::kBytes, style);
    pool_ = std::make_unique<kv_cache::KvPool>(kp, device_, progress.fn());
    progress.finish();
  }
  start_graphs(p);
  if (p.vocabulary) {
    if (p.vocabulary->size() > static_cast<size_t>(model_->config().vocab_size))
      fail(ErrorCode::kInvalidArgument, "tokenizer has ", p.vocabulary->size(),
           " tokens, the model's vocabulary ", model_->config().vocab_size);
    grammars_ = std::make_unique<grammar::GrammarCache>(p.vocabulary);
  }
}

void Worker::start_graphs(const WorkerParams& p) {
  const bool want =
      p.graph_mode == GraphMode::kOn || (p.graph_mode == GraphMode::kAuto && p.device.is_cuda());
  if (!want) return;
  if (!model_->graphable()) {
    if (p.graph_mode == GraphMode::kOn)
      TESSERA_LOG_WARN(
          "decode graphs off: they need the whole model on one rank (no pipeline, "
          "tensor or expert parallelism) and a dense model");
    return;
  }
  // A step with a table wider than the graphs' (or more sequences) runs op by op.
  const model::DecodeGraphParams gp =
      model::decode_graph_params(*model_, pool_->params(), p.graph_max_batch);
  try {
    graphs_ = std::make_unique<model::DecodeGraphs>(*model_, *pool_, gp);
  } catch (const Error& e) {
    // Never run on a GPU yet: a recording that fails leaves the worker serving op by op.
    TESSERA_LOG_ERROR("decode graphs off: recording failed: {}", e.what());
    return;
  }
  std::string sizes;
  for (int b : graphs_->buckets()) sizes += (sizes.empty() ? "" : " ") + std::to_string(b);
  TESSERA_LOG_INFO("decode graphs: batch sizes {} ({}), tables of {} blocks", sizes,
                   graphs_->records() ? "recorded" : "ops re-run per replay",
                   gp.max_blocks_per_seq);
}

void Worker::add_matcher(uint64_t seq_id, const std::string& gbnf) {
  if (!grammars_)
    fail(ErrorCode::kUnsupported, "sequence ", seq_id,
         " is constrained by a grammar but this worker has no vocabulary for it");
  matchers_.insert_or_assign(seq_id, std::optional<grammar::Matcher>(grammars_->get(gbnf)));
}

// An ambiguous user grammar must not fail the whole batch's step: past its limits the sequence
// only ends (logged), and its neighbours go on.
void Worker::fill_mask(uint64_t seq_id, std::optional<grammar::Matcher>& m) {
  mask_.assign((static_cast<size_t>(model_->config().vocab_size) + 63) / 64, 0);
  try {
    if (m) m->fill_mask(mask_);
  } catch (const Error& e) {
    TESSERA_LOG_WARN("sequence {}: grammar gave up ({}); ending it", seq_id, e.what());
    m.reset();
    std::fill(mask_.begin(), mask_.end(), 0);
  }
  bool any = false;
  for (uint64_t w : mask_) any = any || w != 0;
  if (!any)  // terminated (or given up): only the end can follow
    for (int32_t e : grammars_->vocab().eos_tokens())
      mask_[static_cast<uint32_t>(e) >> 6] |= uint64_t{1} << (static_cast<uint32_t>(e) & 63);
}

void Worker::advance(uint64_t seq_id, std::optional<grammar::Matcher>& m, int32_t token) {
  if (!m) return;
  try {
    if (!m->accept(token) && !m->is_terminated())
      TESSERA_LOG_ERROR("sequence {}: sampled token {} outside its grammar's mask", seq_id, token);
  } catch (const Error& e) {
    TESSERA_LOG_WARN("sequence {}: grammar gave up ({}); ending it", seq_id, e.what());
    m.reset();
  }
}

// Under data-parallel expert parallelism each EP rank runs (and samples) only the sequences the
// scheduler gave it.
bool Worker::mine(int32_t attention_rank) const {
  const auto& s = model_->shard();
  return !s.ep_data_attention || attention_rank == s.ep_rank;
}

void Worker::finish_send() {
  if (!pending_send_) return;
  auto w = std::move(pending_send_);
  w->wait();
  pending_out_ = Tensor();
}

protocol::ExecuteResult Worker::execute(const protocol::ExecutePlan& plan) {
  const auto before = comm_tallies();
  protocol::ExecuteResult result = run_plan(plan);
  // A stream-ordered engine (NCCL) reports here what failed in this step's collectives.
  for (const auto& [kind, c] : comms_) c->synchronize();
  comm_bytes_since(before, result);
  return result;
}

protocol::ExecuteResult Worker::run_plan(const protocol::ExecutePlan& plan) {
  const int vocab = model_->config().vocab_size;
  const bool sampler = output_rank();
  for (const auto& ns : plan.new_sequences) {
    if (!sampler || !mine(ns.attention_rank)) continue;
    sampling::Sampler s(ns.sampling, vocab);
    s.set_prompt(ns.prompt);
    samplers_.insert_or_assign(ns.seq_id, std::move(s));
    if (!ns.sampling.grammar.empty()) add_matcher(ns.seq_id, ns.sampling.grammar);
  }
  protocol::ExecuteResult result;
  if (!plan.chunks.empty()) {
    model::StepBatch step(pool_->params().block_size, pool_->params().num_blocks);
    std::vector<uint64_t> sample_seqs;
    for (const auto& ch : plan.chunks) {
      if (!mine(ch.attention_rank)) continue;
      if (ch.sample && sampler && !samplers_.contains(ch.seq_id))
        fail(ErrorCode::kInvalidArgument, "sequence ", ch.seq_id, " has no sampler");
      step.add(ch.seq_id, ch.tokens, ch.start_pos, ch.block_table,
               ch.sample ? model::StepBatch::Logits::kLast : model::StepBatch::Logits::kNone);
      if (ch.sample) sample_seqs.push_back(ch.seq_id);
    }
    model::ForwardBatch batch = step.batch();
    const auto& cfg = model_->config();
    std::vector<int64_t> expert_tokens;
    if (cfg.is_moe()) {
      expert_tokens.assign(static_cast<size_t>(model_->shard().num_layers) * cfg.num_experts, 0);
      batch.expert_tokens = expert_tokens;
    }
    const auto& shard = model_->shard();
    // A data-parallel EP rank with none of this step's sequences still serves its experts; its
    // peers in the other stages skip their hidden states alike.
    const bool idle = step.num_tokens() == 0;
    Tensor hidden_in;
    if (!shard.first_stage() && !idle) {  // the previous stage's hidden states for these tokens
      hidden_in =
          Tensor::empty({static_cast<int64_t>(step.num_tokens()), model_->config().hidden_size},
                        DType::kF32, device_);
      pp_->recv(hidden_in, shard.stage - 1);
    }
    Tensor out;
    if (graphs_) out = graphs_->forward(batch);  // undefined unless a plain decode step that fits
    if (!out.defined())
      out = model_->forward(batch, *pool_, shard.first_stage() ? nullptr : &hidden_in);
    for (size_t i = 0; i < expert_tokens.size(); ++i)
      if (expert_tokens[i] > 0)
        result.expert_tokens.push_back(
            {.layer = shard.first_layer + static_cast<int32_t>(i / cfg.num_experts),
             .expert = static_cast<int32_t>(i % cfg.num_experts),
             .tokens = static_cast<uint32_t>(expert_tokens[i])});
    if (!model_->last_stage()) {
      if (!idle) {
        // The hidden states move to the next stage while this one takes its next plan (and
        // receives that plan's input: gloo and shm send and receive at once); the previous
        // send is waited for first, so one is in flight at a time.
        finish_send();
        pending_send_ = pp_->send_async(out, shard.stage + 1);
        pending_out_ = out;
      }
    } else if (sampler && !sample_seqs.empty()) {
      sample_rows(out, sample_seqs, result);  // on the logits' device
    }
  }
  for (uint64_t id : plan.finished) {
    samplers_.erase(id);
    matchers_.erase(id);
  }
  return result;
}

std::vector<std::map<std::string, comm::OpTally>> Worker::comm_tallies() const {
  std::vector<std::map<std::string, comm::OpTally>> t;
  for (const auto& [kind, c] : comms_) {
    const auto* counted = dynamic_cast<const comm::CountingCommunicator*>(c);
    t.push_back(counted ? counted->tallies() : std::map<std::string, comm::OpTally>{});
  }
  return t;
}

void Worker::comm_bytes_since(const std::vector<std::map<std::string, comm::OpTally>>& before,
                              protocol::ExecuteResult& result) const {
  const auto after = comm_tallies();
  for (size_t i = 0; i < after.size(); ++i)
    for (const auto& [op, t] : after[i]) {
      comm::OpTally was;
      if (auto it = before[i].find(op); it != before[i].end()) was = it->second;
      if (t.calls == was.calls) continue;
      result.comm_bytes.push_back({.group = comms_[i].first,
                                   .op = op,
                                   .calls = t.calls - was.calls,
                                   .bytes = t.bytes - was.bytes});
    }
}

// One sampling op for the step's rows, on the logits' device: the host sends each row's knobs,
// draw, edits and (for a constrained row) grammar mask in one upload and gets back 1 + max_top
// tokens and logprobs per row, never the logits.
void Worker::sample_rows(Tensor& logits, const std::vector<uint64_t>& seqs,
                         protocol::ExecuteResult& result) {
  const int vocab = model_->config().vocab_size;
  ops::SampleBatch batch(vocab);
  for (uint64_t id : seqs) {
    auto m = matchers_.find(id);
    if (m == matchers_.end()) {
      batch.add(samplers_.at(id).next_row());
      continue;
    }
    // Constrained rows share the step with the others; only their row carries a mask.
    fill_mask(id, m->second);
    batch.add(samplers_.at(id).next_row(mask_));
  }
  const auto rows = static_cast<int64_t>(seqs.size()), cols = int64_t{batch.max_top()} + 1;
  const ops::SampleMeta meta = batch.upload(device_);
  Tensor tokens = Tensor::empty({rows, cols}, DType::kI32, device_);
  Tensor logprobs = Tensor::empty({rows, cols}, DType::kF32, device_);
  ops::sample(logits, meta, tokens, logprobs);
  const Tensor host_tokens = to_host(tokens), host_logprobs = to_host(logprobs);
  for (size_t r = 0; r < seqs.size(); ++r) {
    auto& s = samplers_.at(seqs[r]);
    sampling::SampleResult res = s.result(host_tokens.data_as<int32_t>() + r * cols,
                                          host_logprobs.data_as<float>() + r * cols);
    s.accept(res.token);
    if (auto m = matchers_.find(seqs[r]); m != matchers_.end())
      advance(seqs[r], m->second, res.token);
    result.sampled.push_back({seqs[r], std::move(res)});
  }
}

}  // namespace tessera::worker
