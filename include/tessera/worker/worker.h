// Worker: runs one shard of the model for an ExecutePlan and, on the output rank (TP rank 0 of
// the last pipeline stage), samples. It owns its shard (weights mapped from the file), its KV pool
// and one Sampler per live sequence (and a grammar Matcher per constrained one, advanced on each
// sampled token; preemption by recompute re-feeds tokens without sampling, so it keeps its state).
// Every rank of a group receives the same plan; a later stage receives its input hidden states from
// the previous stage on the PP communicator and sends its own on. The communicators are borrowed
// (the worker process owns them). Single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tessera/comm/communicator.h"
#include "tessera/comm/counting.h"
#include "tessera/grammar/grammar_cache.h"
#include "tessera/grammar/matcher.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/decode_graphs.h"
#include "tessera/model/llama.h"
#include "tessera/model/weights.h"
#include "tessera/ops/ops.h"
#include "tessera/protocol/step.h"
#include "tessera/sampling/sampler.h"

namespace tessera::worker {

// Decode steps replayed from device graphs (model/decode_graphs.h). kAuto: recorded on a CUDA
// device when the shard is the whole model on one rank; kOff: never; kOn: also on other devices,
// where a replay re-runs the ops (the tests' way to run the padded path on the CPU).
enum class GraphMode { kAuto, kOff, kOn };
GraphMode parse_graph_mode(const std::string& s);  // "auto", "off", "on"; throws naming the value
const char* graph_mode_name(GraphMode m);

struct WorkerParams {
  std::string model_path;
  int num_blocks = 0;  // 0: sized from kv_cache_bytes
  int block_size = 16;
  size_t kv_cache_bytes = size_t{256} << 20;
  DType kv_cache_dtype = DType::kF32;  // F32, F16 or BF16 (kv_cache::KvPoolParams::dtype)
  model::ShardSpec shard;              // the whole model by default
  // The device this rank runs on: weights, activations and the KV pool live there; logits come
  // the sampled tokens come back to the host. `backend: cuda` without a GPU fails here, never falls
  // back.
  Device device = Device::cpu();
  // The device's memory and stream (ops::make_allocator(device)); null: the worker makes it. A
  // group worker makes it first, so its NCCL communicators enqueue on the same stream.
  std::shared_ptr<Allocator> allocator;
  GraphMode graph_mode = GraphMode::kAuto;
  int graph_max_batch = 64;  // the largest decode bucket recorded
  // CPU backend: how matmul treats activations for Q4_0..Q8_0 weights (ops.h). The worker sets it
  // for its process when it starts (serve/generate --activations, topology cpu_activations).
  ops::cpu::Activations cpu_activations = ops::cpu::Activations::kInt8;
  // A TP rank's shard overlaps its all-reduces with compute (model::ShardSpec::tp_overlap).
  bool tp_overlap = false;
  // A TP rank's shard keeps its rows of the residual (model::ShardSpec::sequence_parallel).
  bool sequence_parallel = false;
  // Expert parallelism: data-parallel attention, tokens exchanged by all-to-all
  // (model::ShardSpec::ep_data_attention); false: attention replicated on the EP ranks.
  bool ep_data_attention = false;
  // The tokens' bytes for constrained decoding (output rank); null: a sequence with a grammar is
  // refused.
  std::shared_ptr<const grammar::Vocabulary> vocabulary;
};

class Worker {
 public:
  // `tp`, `pp` and `ep` (expert parallelism) may be null for a single rank; they must outlive
  // the worker.
  explicit Worker(const WorkerParams& p, comm::Communicator* tp = nullptr,
                  comm::Communicator* pp = nullptr, comm::Communicator* ep = nullptr);
  // The decode graphs this worker replays (null when off or not possible).
  const model::DecodeGraphs* decode_graphs() const { return graphs_.get(); }
  const model::ModelConfig& config() const { return model_->config(); }
  const model::LlamaModel& model() const { return *model_; }
  // TP (and EP) rank 0 of the last stage: the rank that samples and answers the engine; under
  // data-parallel expert parallelism every EP rank of the last stage samples its own sequences.
  bool output_rank() const {
    const auto& s = model_->shard();
    return model_->last_stage() && s.tp_rank == 0 && (s.ep_rank == 0 || s.ep_data_attention);
  }
  int num_blocks() const { return pool_->params().num_blocks; }
  int block_size() const { return pool_->params().block_size; }

  // Runs one step; the result also says what the step sent on the communicators that count
  // (comm::CountingCommunicator, as the worker group makes them). Throws tessera::Error when the
  // plan is inconsistent (unknown sequence, token outside the vocabulary, slot outside the cache);
  // the worker's state stays usable.
  protocol::ExecuteResult execute(const protocol::ExecutePlan& plan);
  size_t live_sequences() const { return samplers_.size(); }
  size_t kv_bytes() const { return pool_->bytes(); }
  Device device() const { return model_->device(); }

 private:
  comm::Communicator* pp_ = nullptr;
  std::vector<std::pair<std::string, comm::Communicator*>> comms_;  // by kind: "tp", "pp", "ep"
  protocol::ExecuteResult run_plan(const protocol::ExecutePlan& plan);
  bool mine(int32_t attention_rank) const;
  std::vector<std::map<std::string, comm::OpTally>> comm_tallies() const;
  void comm_bytes_since(const std::vector<std::map<std::string, comm::OpTally>>& before,
                        protocol::ExecuteResult& result) const;
  std::shared_ptr<Allocator> device_;  // the memory of this rank's device
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<model::LlamaModel> model_;
  std::unique_ptr<kv_cache::KvPool> pool_;
  std::unique_ptr<model::DecodeGraphs> graphs_;  // null: every step runs op by op
  void sample_rows(Tensor& logits, const std::vector<uint64_t>& seqs,
                   protocol::ExecuteResult& result);
  std::unordered_map<uint64_t, sampling::Sampler> samplers_;
  // Empty when the sequence's grammar hit its limits (an ambiguous user grammar): it may only end.
  std::unordered_map<uint64_t, std::optional<grammar::Matcher>> matchers_;
  std::unique_ptr<grammar::GrammarCache> grammars_;  // with a vocabulary only
  std::vector<uint64_t> mask_;                       // one row's allowed tokens
  void add_matcher(uint64_t seq_id, const std::string& gbnf);
  void start_graphs(const WorkerParams& p);  // records graphs_ as p.graph_mode asks
  // The allowed tokens of a constrained sequence into mask_.
  void fill_mask(uint64_t seq_id, std::optional<grammar::Matcher>& m);
  void advance(uint64_t seq_id, std::optional<grammar::Matcher>& m, int32_t token);
  // Pipeline stages but the last: the hidden states of the latest step on their way to the next
  // stage (pp_->send_async) and the tensor they are sent from. Declared last: destroyed (waited
  // for) first.
  Tensor pending_out_;
  std::unique_ptr<comm::Work> pending_send_;
  void finish_send();  // waits for pending_send_ (throws its error) and drops it
};

}  // namespace tessera::worker
