// LlmEngine: the EngineInterface implementation. One step-loop thread owns the scheduler, every
// request's state (detokenizer, stop checker, timings) and the executor (an in-process Worker for
// now). Other threads only touch the inbox (new requests, aborts) under `mu_` and read atomics.
// Loop: drain inbox → schedule → execute → update requests, stream outputs → metrics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tessera/engine/engine.h"
#include "tessera/engine/executor.h"
#include "tessera/engine/stop_checker.h"
#include "tessera/engine/worker_group.h"
#include "tessera/grammar/vocabulary.h"
#include "tessera/scheduler/scheduler.h"
#include "tessera/tokenizer/detokenizer.h"
#include "tessera/worker/worker.h"

namespace tessera::engine {

struct EngineConfig {
  std::string model_path;
  std::string served_model_name;
  EngineLimits limits;
  int block_size = 16;
  int num_blocks = 0;  // 0: from kv_cache_bytes
  size_t kv_cache_bytes = size_t{256} << 20;
  DType kv_cache_dtype = DType::kF32;  // every worker's KV pool: F32, F16 or BF16
  bool enable_prefix_caching = true;
  // The single worker's device (`serve --backend`); a worker group takes its devices from the
  // topology instead.
  Device device = Device::cpu();
  // CPU backend: int8 (integer dot products) or fp32 (exact) activations for quantized weights;
  // every worker, in process or not, group or single, runs with it.
  ops::cpu::Activations cpu_activations = ops::cpu::Activations::kInt8;
  // Decode steps replayed from CUDA graphs (worker::GraphMode; `--decode-graphs`, topology
  // scheduler.decode_graphs), batch sizes recorded up to limits.max_num_seqs.
  worker::GraphMode graph_mode = worker::GraphMode::kAuto;
  // Tensor parallelism: overlapped micro-batches (model::ShardSpec::tp_overlap; topology
  // tp_overlap, serve --tp-overlap).
  bool tp_overlap = false;
  // Tensor parallelism: the residual stream cut by rows (model::ShardSpec::sequence_parallel;
  // topology sequence_parallel, serve --sequence-parallel).
  bool sequence_parallel = false;
  // Expert parallelism: data-parallel attention and all-to-all token exchange
  // (worker::WorkerParams::ep_data_attention; topology parallel.expert_attention).
  bool ep_data_attention = false;
  double health_timeout_seconds = 60.0;
  // Path of the tessera binary to run the workers in their own processes (`tessera worker`);
  // empty (and no group): the worker runs inside the engine's process.
  std::string worker_executable;
  // A T x P worker group (one process per device, each with its shard) instead of one worker;
  // its `worker` and `executable` fields are left empty: group_params() fills them from the
  // fields above.
  std::optional<WorkerGroupParams> group;
};

// Builds the executor the engine runs its steps on; called at start and again after a worker
// death (a restart). Tests inject a fake here, so the step loop runs without any model file.
using ExecutorFactory = std::function<std::unique_ptr<Executor>()>;

class LlmEngine final : public EngineInterface {
 public:
  // Loads the model (the executor cfg describes) and its tokenizer; call start() to run.
  explicit LlmEngine(const EngineConfig& cfg);
  // The same engine over any executor and tokenizer: cfg's model fields are only reported
  // (ModelInfo), never opened.
  LlmEngine(const EngineConfig& cfg, ExecutorFactory make_executor,
            std::unique_ptr<tokenizer::Tokenizer> tokenizer);
  ~LlmEngine() override;

  void start();
  void submit(ValidRequest req, OutputCallback cb) override;
  void submit_all(std::vector<std::pair<ValidRequest, OutputCallback>> reqs) override;
  void abort(const std::string& request_id) override;
  const tokenizer::Tokenizer& tokenizer() const override { return *tokenizer_; }
  const ModelInfo& model_info() const override { return info_; }
  const EngineLimits& limits() const override { return cfg_.limits; }
  MetricsRegistry& metrics() override { return metrics_; }
  bool ready() const override;
  bool healthy() const override;
  void shutdown(double drain_seconds) override;

 private:
  struct Live {
    protocol::GenerationRequest req;
    OutputCallback cb;
    uint64_t seq = 0;
    std::unique_ptr<tokenizer::IncrementalDecoder> detok;
    std::unique_ptr<StopChecker> stop;
    int generated = 0;
    int cached_tokens = 0;  // where its first chunk started: the prefix cache held the rest
    bool sent_to_worker = false;
    protocol::Clock::time_point arrival, scheduled, last_token;
    bool has_first = false;
  };
  struct Inbox {
    std::vector<std::pair<protocol::GenerationRequest, OutputCallback>> added;
    std::vector<std::string> aborted;
  };

  void loop();
  void admit(protocol::GenerationRequest req, OutputCallback cb);
  void step();
  void on_token(Live& r, const protocol::SampledToken& t,
                std::optional<scheduler::FinishCause> decided);
  // Ends a request: its callback (when notify), metrics; `free` false when the scheduler already
  // finished and freed the sequence.
  void finish(uint64_t seq, protocol::FinishReason reason, std::string error = {},
              bool notify = true, bool free = true);
  void fail_all(const std::string& why);
  void update_gauges();
  scheduler::SchedulerConfig scheduler_config() const;
  void export_rank_memory();

  EngineConfig cfg_;
  ExecutorFactory make_executor_;
  std::unique_ptr<Executor> executor_;
  void restart_after_worker_death(const std::string& why);
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  ModelInfo info_;
  MetricsRegistry metrics_;

  // Engine-thread state.
  std::unordered_map<uint64_t, Live> live_;
  std::unordered_map<std::string, uint64_t> by_id_;
  protocol::ExecutePlan to_exec(scheduler::StepPlan& plan);
  uint64_t next_seq_ = 1;
  std::pair<uint64_t, uint64_t> prefix_seen_{0, 0};  // scheduler prefix totals already exported

  // Shared with other threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Inbox inbox_;
  size_t pending_ = 0;  // requests in the inbox or live (for the queue limit)
  bool stopping_ = false;
  std::atomic<bool> draining_{false};
  std::atomic<bool> running_{false};
  std::atomic<int64_t> last_progress_ns_{0};
  std::atomic<bool> worker_ok_{true};
  std::thread thread_;
};

// What cfg says one worker (or each rank) runs, and the worker group it describes (the topology's
// with cfg's model, KV sizing and binary; or one worker process on cfg.device): the one place
// these are filled.
worker::WorkerParams worker_params(const EngineConfig& cfg);
WorkerGroupParams group_params(const EngineConfig& cfg);
// The executor factory an EngineConfig describes: a worker group (the topology's, or one worker
// process on cfg.device), or (no worker_executable and no group) a worker inside this process.
ExecutorFactory executor_for(const EngineConfig& cfg);

// Loads the tokenizer of a GGUF file or Hugging Face directory (what the engine serves with).
std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& model_path);
// The tokenizer's tokens as bytes, for constrained decoding in a worker: special tokens are empty
// (a grammar never produces them) and the stop ids end a complete grammar.
std::shared_ptr<const grammar::Vocabulary> grammar_vocabulary(const tokenizer::Tokenizer& t);
// The same from a model file; null when the file carries no tokenizer (a test model), so that
// its worker serves unconstrained requests and refuses constrained ones.
std::shared_ptr<const grammar::Vocabulary> grammar_vocabulary(const std::string& model_path);

}  // namespace tessera::engine
