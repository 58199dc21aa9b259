#include "tessera/engine/llm_engine.h"

#include <algorithm>
#include <chrono>

#include "tessera/core/error.h"
#include "tessera/core/log.h"

namespace tessera::engine {
namespace {

using protocol::Clock;
using protocol::FinishReason;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

const std::vector<double> kLatencyBuckets{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                          0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                          7.5,   10,    20,   40,   80};

}  // namespace

worker::WorkerParams worker_params(const EngineConfig& cfg) {
  return {.model_path = cfg.model_path,
          .num_blocks = cfg.num_blocks,
          .block_size = cfg.block_size,
          .kv_cache_bytes = cfg.kv_cache_bytes,
          .kv_cache_dtype = cfg.kv_cache_dtype,
          .device = cfg.device,
          .graph_mode = cfg.graph_mode,
          .graph_max_batch = cfg.limits.max_num_seqs,
          .cpu_activations = cfg.cpu_activations,
          .tp_overlap = cfg.tp_overlap,
          .sequence_parallel = cfg.sequence_parallel,
          .ep_data_attention = cfg.ep_data_attention};
}

WorkerGroupParams group_params(const EngineConfig& cfg) {
  WorkerGroupParams gp;
  if (cfg.group) {
    gp = *cfg.group;
  } else {  // no topology: one worker process on cfg.device, a group of 1 x 1
    gp.devices = {cfg.device.index};
    gp.backend = device_backend_name(cfg.device);
  }
  gp.worker = worker_params(cfg);
  gp.executable = cfg.worker_executable;
  return gp;
}

ExecutorFactory executor_for(const EngineConfig& cfg) {
  return [cfg]() -> std::unique_ptr<Executor> {
    if (!cfg.group && cfg.worker_executable.empty()) {
      worker::WorkerParams wp = worker_params(cfg);
      wp.vocabulary = grammar_vocabulary(cfg.model_path);
      return std::make_unique<LocalExecutor>(wp);
    }
    return std::make_unique<WorkerGroupExecutor>(group_params(cfg));
  };
}

LlmEngine::LlmEngine(const EngineConfig& cfg) : LlmEngine(cfg, executor_for(cfg), nullptr) {}

LlmEngine::LlmEngine(const EngineConfig& cfg, ExecutorFactory make_executor,
                     std::unique_ptr<tokenizer::Tokenizer> tokenizer)
    : cfg_(cfg), make_executor_(std::move(make_executor)), tokenizer_(std::move(tokenizer)) {
  executor_ = make_executor_();  // first: a model that cannot load is named by the worker
  if (!tokenizer_) tokenizer_ = load_tokenizer(cfg.model_path);
  const ExecutorInfo& ei = executor_->info();
  info_ = ModelInfo{.id = cfg.served_model_name,
                    .path = cfg.model_path,
                    .max_model_len = ei.max_position,
                    .vocab_size = ei.vocab_size,
                    .num_blocks = ei.num_blocks,
                    .block_size = ei.block_size};
  scheduler_ = std::make_unique<scheduler::Scheduler>(scheduler_config());
  export_rank_memory();
  metrics_.gauge_set("tessera:cache_config_info", "KV cache configuration", 1.0,
                     {{"block_size", std::to_string(info_.block_size)},
                      {"num_gpu_blocks", std::to_string(info_.num_blocks)}});
  update_gauges();
}

LlmEngine::~LlmEngine() { shutdown(0.0); }

// Per rank of a worker group: what it holds (weights / T, its KV pool) and its resident memory.
void LlmEngine::export_rank_memory() {
  for (const auto& h : executor_->info().ranks) {
    const Labels rank{{"rank", std::to_string(h.rank)}};
    metrics_.gauge_set("tessera:worker_weight_bytes", "Weight bytes of this rank's shard",
                       static_cast<double>(h.weight_bytes), rank);
    metrics_.gauge_set("tessera:worker_kv_cache_bytes", "Bytes of this rank's KV cache pool",
                       static_cast<double>(h.kv_bytes), rank);
    metrics_.gauge_set("tessera:worker_resident_bytes",
                       "Resident memory of the rank's process after loading",
                       static_cast<double>(h.resident_bytes), rank);
  }
}

scheduler::SchedulerConfig LlmEngine::scheduler_config() const {
  return {.num_blocks = info_.num_blocks,
          .block_size = info_.block_size,
          .max_num_seqs = cfg_.limits.max_num_seqs,
          .max_num_batched_tokens = cfg_.limits.max_num_batched_tokens,
          .max_model_len = info_.max_model_len,
          .enable_prefix_caching = cfg_.enable_prefix_caching,
          .max_waiting = cfg_.limits.max_waiting,
          .max_in_flight = executor_ ? executor_->max_in_flight() : 1,
          .attention_ranks = cfg_.ep_data_attention && cfg_.group ? cfg_.group->expert : 1};
}

// A dead worker loses its KV cache: every live request fails with the reason, the scheduler (and
// its prefix cache, which described that KV cache) starts afresh, and a new worker is started.
// Readiness is false until it reports in.
void LlmEngine::restart_after_worker_death(const std::string& why) {
  worker_ok_ = false;
  TESSERA_LOG_ERROR("worker lost: {}; restarting it", why);
  metrics_.counter_add("tessera:worker_restarts_total", "Worker restarts after a failure");
  std::vector<uint64_t> seqs;
  for (const auto& [seq, r] : live_) seqs.push_back(seq);
  for (uint64_t s : seqs) finish(s, FinishReason::kError, "worker failed: " + why);
  scheduler_ = std::make_unique<scheduler::Scheduler>(scheduler_config());
  try {
    executor_.reset();  // the old group's processes, ports and store go first
    executor_ = make_executor_();
    export_rank_memory();
    worker_ok_ = true;
    TESSERA_LOG_INFO("worker restarted");
  } catch (const std::exception& e) {
    TESSERA_LOG_ERROR("worker restart failed: {}", e.what());
  }
}

void LlmEngine::start() {
  last_progress_ns_ = now_ns();
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

bool LlmEngine::ready() const { return running_ && !draining_ && worker_ok_; }

bool LlmEngine::healthy() const {
  return running_ && worker_ok_ &&
         (now_ns() - last_progress_ns_.load()) < cfg_.health_timeout_seconds * 1e9;
}

// The request was validated against this model (ValidRequest); only the engine's state can refuse
// it here.
void LlmEngine::submit(ValidRequest valid, OutputCallback cb) {
  std::vector<std::pair<ValidRequest, OutputCallback>> one;
  one.emplace_back(std::move(valid), std::move(cb));
  submit_all(std::move(one));
}

void LlmEngine::submit_all(std::vector<std::pair<ValidRequest, OutputCallback>> reqs) {
  std::lock_guard lock(mu_);
  if (!running_ || stopping_ || draining_)
    fail(ErrorCode::kInternal, "the engine is not accepting requests");
  const auto room = static_cast<size_t>(cfg_.limits.max_waiting + cfg_.limits.max_num_seqs);
  if (pending_ + reqs.size() > room)
    fail(ErrorCode::kResourceExhausted, "the server is overloaded: ", pending_, " requests queued");
  for (auto& [valid, cb] : reqs) {
    ++pending_;
    inbox_.added.emplace_back(std::move(valid).take(), std::move(cb));
  }
  cv_.notify_one();
}

void LlmEngine::abort(const std::string& request_id) {
  std::lock_guard lock(mu_);
  inbox_.aborted.push_back(request_id);
  cv_.notify_one();
}

void LlmEngine::shutdown(double drain_seconds) {
  {
    std::lock_guard lock(mu_);
    if (!running_ && !thread_.joinable()) return;
    draining_ = true;
  }
  const auto until = Clock::now() + std::chrono::duration<double>(drain_seconds);
  while (Clock::now() < until) {
    {
      std::lock_guard lock(mu_);
      if (pending_ == 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

void LlmEngine::loop() {
  while (true) {
    Inbox in;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(500), [&] {
        return stopping_ || !inbox_.added.empty() || !inbox_.aborted.empty() || !live_.empty();
      });
      std::swap(in, inbox_);
      if (stopping_) {
        lock.unlock();
        for (auto& [req, cb] : in.added) {
          protocol::RequestOutput out{.request_id = req.request_id, .finish = FinishReason::kAbort};
          cb(out);
        }
        fail_all("the server is shutting down");
        return;
      }
    }
    last_progress_ns_ = now_ns();
    for (auto& [req, cb] : in.added) admit(std::move(req), std::move(cb));
    for (const auto& id : in.aborted)
      if (auto it = by_id_.find(id); it != by_id_.end()) finish(it->second, FinishReason::kAbort);
    // Deadlines are enforced here, within one step of expiring.
    const auto now = Clock::now();
    std::vector<uint64_t> expired;
    for (auto& [seq, r] : live_)
      if (r.req.deadline && *r.req.deadline <= now) expired.push_back(seq);
    for (uint64_t seq : expired)
      finish(seq, FinishReason::kError, "the request's deadline expired");
    if (scheduler_->has_work() || scheduler_->plans_in_flight() > 0 || scheduler_->has_ended()) {
      step();
    } else if (executor_ && !executor_->check_alive()) {
      restart_after_worker_death(executor_->failure());  // found dead while idle: no request lost
    }
    update_gauges();
  }
}

void LlmEngine::admit(protocol::GenerationRequest req, OutputCallback cb) {
  const uint64_t seq = next_seq_++;
  try {
    if (by_id_.contains(req.request_id))
      fail(ErrorCode::kInvalidArgument, "request id '", req.request_id, "' is already in use");
    // The scheduler finishes a sequence on its stop tokens and its length; the engine keeps only
    // the stop strings, which need the text.
    std::vector<int32_t> stop_ids = req.stopping.stop_token_ids;
    if (!req.stopping.ignore_eos)
      stop_ids.insert(stop_ids.end(), tokenizer_->stop_ids().begin(), tokenizer_->stop_ids().end());
    scheduler_->add({.seq_id = seq,
                     .prompt = req.prompt_ids,
                     .max_tokens = req.stopping.max_tokens,
                     .stop_token_ids = std::move(stop_ids),
                     .priority = req.priority});
  } catch (const Error& e) {
    protocol::RequestOutput out{.request_id = req.request_id,
                                .finish = FinishReason::kError,
                                .error = e.what(),
                                .prompt_tokens = static_cast<int>(req.prompt_ids.size())};
    cb(out);
    std::lock_guard lock(mu_);
    --pending_;
    return;
  }
  Live r;
  r.detok = std::make_unique<tokenizer::IncrementalDecoder>(*tokenizer_);
  r.stop =
      std::make_unique<StopChecker>(req.stopping.stop, req.stopping.include_stop_str_in_output);
  r.arrival = Clock::now();
  r.req = std::move(req);
  r.cb = std::move(cb);
  r.seq = seq;
  by_id_[r.req.request_id] = seq;
  live_.emplace(seq, std::move(r));
}

// Fills the pipeline with up to max_in_flight plans (each over different sequences: with P
// stages, P micro-batches keep every stage busy), then collects the oldest result. The
// scheduler's flights are the record of what is in flight.
void LlmEngine::step() {
  if (!executor_ || !executor_->alive()) {
    restart_after_worker_death("no live worker");
    return;
  }
  while (static_cast<int>(scheduler_->plans_in_flight()) < executor_->max_in_flight()) {
    scheduler::StepPlan plan = scheduler_->schedule();
    if (plan.empty()) break;
    try {
      executor_->submit(to_exec(plan));
    } catch (const std::exception& e) {
      TESSERA_LOG_ERROR("step failed: {}", e.what());
      restart_after_worker_death(e.what());  // a submit only fails when the workers are gone
      return;
    }
  }
  if (scheduler_->plans_in_flight() == 0) return;
  protocol::ExecuteResult result;
  try {
    result = executor_->collect();
  } catch (const std::exception& e) {
    // A failed step fails the requests in it, not the server.
    TESSERA_LOG_ERROR("step failed: {}", e.what());
    if (!executor_->alive()) {
      restart_after_worker_death(e.what());
      return;
    }
    metrics_.counter_add("tessera:request_errors_total", "Failed requests by kind", 1.0,
                         {{"kind", "step"}});
    for (uint64_t id : scheduler_->on_step_failed())  // aborted there: not freed again here
      finish(id, FinishReason::kError, e.what(), /*notify=*/true, /*free=*/false);
    return;
  }
  for (const auto& e : result.expert_tokens)
    metrics_.counter_add(
        "tessera:expert_tokens_total",
        "Tokens routed to each expert of each MoE layer (top-k choices)", e.tokens,
        {{"layer", std::to_string(e.layer)}, {"expert", std::to_string(e.expert)}});
  for (const auto& b : result.comm_bytes) {
    const Labels labels = {{"group", b.group}, {"op", b.op}};
    metrics_.counter_add("tessera:comm_bytes_total",
                         "Bytes the workers' communicators sent, by group kind and op (all-to-all "
                         "and send exact, collectives as a ring sends them)",
                         static_cast<double>(b.bytes), labels);
    metrics_.counter_add("tessera:comm_ops_total",
                         "Collective and point-to-point calls by the workers",
                         static_cast<double>(b.calls), labels);
  }
  std::vector<std::pair<uint64_t, int32_t>> sampled;
  for (const auto& t : result.sampled) sampled.emplace_back(t.seq_id, t.result.token);
  std::unordered_map<uint64_t, scheduler::FinishCause> finished;
  for (const auto& f : scheduler_->on_step_done(sampled)) finished.emplace(f.seq_id, f.cause);
  for (const auto& t : result.sampled) {
    auto it = live_.find(t.seq_id);
    if (it == live_.end()) continue;
    auto f = finished.find(t.seq_id);
    on_token(it->second, t,
             f == finished.end() ? std::nullopt : std::optional<scheduler::FinishCause>(f->second));
  }
}

protocol::ExecutePlan LlmEngine::to_exec(scheduler::StepPlan& plan) {
  protocol::ExecutePlan exec;
  exec.finished = std::move(plan.finished);
  for (const auto& ch : plan.chunks) {
    Live& r = live_.at(ch.seq_id);
    if (!r.sent_to_worker) {
      exec.new_sequences.push_back({.seq_id = r.seq,
                                    .sampling = r.req.sampling,
                                    .prompt = r.req.prompt_ids,
                                    .attention_rank = ch.attention_rank});
      r.sent_to_worker = true;
      r.cached_tokens = ch.start_pos;
      r.scheduled = Clock::now();
      metrics_.histogram_observe("tessera:request_queue_time_seconds", "Time spent waiting",
                                 kLatencyBuckets, seconds(r.scheduled - r.arrival));
    }
  }
  exec.chunks = std::move(plan.chunks);  // the scheduler emits the wire type itself
  if (!plan.preempted.empty())
    metrics_.counter_add("tessera:num_preemptions_total", "Preempted sequences",
                         static_cast<double>(plan.preempted.size()));
  return exec;
}

// `decided`: the scheduler finished the sequence with this token (a stop token or its length)
// and has freed it; otherwise only a stop string can end it here.
void LlmEngine::on_token(Live& r, const protocol::SampledToken& t,
                         std::optional<scheduler::FinishCause> decided) {
  const auto now = Clock::now();
  if (!r.has_first) {
    r.has_first = true;
    metrics_.histogram_observe("tessera:time_to_first_token_seconds", "Time to first token",
                               kLatencyBuckets, seconds(now - r.arrival));
  } else {
    metrics_.histogram_observe("tessera:inter_token_latency_seconds", "Inter-token latency",
                               kLatencyBuckets, seconds(now - r.last_token));
  }
  r.last_token = now;
  ++r.generated;
  metrics_.counter_add("tessera:generation_tokens_total", "Generated tokens");
  const int32_t tok = t.result.token;
  const bool stop_token = decided == scheduler::FinishCause::kStopToken;
  protocol::RequestOutput out{.request_id = r.req.request_id,
                              .prompt_tokens = static_cast<int>(r.req.prompt_ids.size()),
                              .completion_tokens = r.generated,
                              .cached_tokens = r.cached_tokens};
  out.new_token_ids.push_back(tok);
  if (r.req.sampling.logprobs || r.req.sampling.top_logprobs > 0) out.logprobs.push_back(t.result);
  if (!stop_token) {  // a stop token is never text
    auto d = r.stop->push(r.detok->push(tok));
    out.new_text = std::move(d.text);
    if (d.matched) {
      out.finish = FinishReason::kStop;
      out.matched_stop = d.matched;
    }
  } else {
    out.finish = FinishReason::kStop;
  }
  if (!out.finished() && decided == scheduler::FinishCause::kLength)
    out.finish = FinishReason::kLength;
  if (out.finished() && !out.matched_stop)
    out.new_text += r.stop->push(r.detok->flush()).text + r.stop->flush();
  const uint64_t seq = r.seq;
  const FinishReason fin = out.finish;
  r.cb(out);
  // A stop string is the engine's decision, so only then is the scheduler told; the sequence it
  // finished itself is already freed.
  if (fin != FinishReason::kNone) finish(seq, fin, {}, /*notify=*/false, /*free=*/!decided);
}

void LlmEngine::finish(uint64_t seq, FinishReason reason, std::string error, bool notify,
                       bool free) {
  auto it = live_.find(seq);
  if (it == live_.end()) return;
  Live& r = it->second;
  // Either way its blocks are freed (full prompt blocks stay in the prefix cache) and the
  // scheduler lists it in the next plan for the workers to forget.
  if (free && reason == FinishReason::kStop) {
    scheduler_->finish(seq);
  } else if (free) {
    scheduler_->abort(seq);
  }
  if (notify) {
    protocol::RequestOutput out{.request_id = r.req.request_id,
                                .finish = reason,
                                .error = error,
                                .prompt_tokens = static_cast<int>(r.req.prompt_ids.size()),
                                .completion_tokens = r.generated,
                                .cached_tokens = r.cached_tokens};
    r.cb(out);
  }
  const char* name = protocol::finish_reason_name(reason);
  if (reason == FinishReason::kAbort) {
    metrics_.counter_add("tessera:request_aborts_total", "Aborted requests");
  } else if (reason == FinishReason::kError) {
    TESSERA_LOG_WARN("request {} failed: {}", r.req.request_id, error);
    metrics_.counter_add("tessera:request_errors_total", "Failed requests by kind", 1.0,
                         {{"kind", "request"}});
  } else {
    metrics_.counter_add("tessera:request_success_total", "Finished requests", 1.0,
                         {{"finished_reason", name}});
    metrics_.histogram_observe("tessera:e2e_request_latency_seconds", "End-to-end latency",
                               kLatencyBuckets, seconds(Clock::now() - r.arrival));
  }
  metrics_.counter_add("tessera:prompt_tokens_total", "Prompt tokens",
                       static_cast<double>(r.req.prompt_ids.size()));
  by_id_.erase(r.req.request_id);
  live_.erase(it);
  std::lock_guard lock(mu_);
  --pending_;
}

void LlmEngine::fail_all(const std::string& why) {
  std::vector<uint64_t> seqs;
  for (const auto& [seq, r] : live_) seqs.push_back(seq);
  for (uint64_t s : seqs) finish(s, FinishReason::kAbort, why);
}

void LlmEngine::update_gauges() {
  const auto s = scheduler_->stats();
  metrics_.gauge_set("tessera:num_requests_running", "Requests running", s.running);
  metrics_.gauge_set("tessera:num_requests_waiting", "Requests waiting", s.waiting);
  metrics_.gauge_set("tessera:kv_cache_usage_perc", "KV cache usage (0-1)",
                     s.total_blocks ? static_cast<double>(s.used_blocks) / s.total_blocks : 0.0);
  // The scheduler keeps running totals (reset with it after a worker restart); export deltas.
  const uint64_t q = s.prefix_queried_tokens, h = s.prefix_hit_tokens;
  if (q < prefix_seen_.first || h < prefix_seen_.second) prefix_seen_ = {0, 0};
  metrics_.counter_add("tessera:prefix_cache_queries_total",
                       "Prompt tokens looked up in the prefix cache",
                       static_cast<double>(q - prefix_seen_.first));
  metrics_.counter_add("tessera:prefix_cache_hits_total", "Prompt tokens found in the prefix cache",
                       static_cast<double>(h - prefix_seen_.second));
  prefix_seen_ = {q, h};
}

}  // namespace tessera::engine
