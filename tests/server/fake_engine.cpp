#include "fake_engine.h"

#include <chrono>

#include "../common/small_tokenizer.h"

namespace tessera::server::testing {

tokenizer::Tokenizer make_test_tokenizer(const std::string& chat_template) {
  return chat_template.empty() ? tessera::testing::small_chatml_tokenizer()
                               : tessera::testing::small_chatml_tokenizer(chat_template);
}

FakeEngine::FakeEngine(FakeEngineOptions opt)
    : opt_(std::move(opt)), tok_(make_test_tokenizer(opt_.chat_template)), held_(opt_.hold) {
  script_ids_ = tok_.encode(opt_.script, {.add_special = false, .parse_special = false});
  info_.id = "fake-model";
  info_.max_model_len = opt_.max_model_len;
  info_.vocab_size = tok_.vocab_size();
  info_.block_size = 16;
  info_.num_blocks = (opt_.max_model_len + 15) / 16;  // one sequence of the whole context fits
  metrics_.counter_add("tessera_fake_engine_steps_total", "steps of the fake engine", 0.0);
  thread_ = std::thread([this] { loop(); });
}

FakeEngine::~FakeEngine() { shutdown(0); }

void FakeEngine::shutdown(double) {
  {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void FakeEngine::submit(engine::ValidRequest valid, OutputCallback cb) {
  if (opt_.submit_error) fail(*opt_.submit_error, "fake engine refuses");
  protocol::GenerationRequest req = std::move(valid).take();
  std::lock_guard<std::recursive_mutex> lock(mu_);
  submitted_.push_back(req);
  const std::string id = req.request_id;
  running_[id] = Running{.req = std::move(req), .cb = std::move(cb)};
  cv_.notify_all();
}

void FakeEngine::abort(const std::string& request_id) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  aborted_.push_back(request_id);
  auto it = running_.find(request_id);
  if (it != running_.end()) it->second.abort = true;
  cv_.notify_all();
}

void FakeEngine::release() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  held_ = false;
  cv_.notify_all();
}

std::vector<protocol::GenerationRequest> FakeEngine::submitted() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return submitted_;
}

std::vector<std::string> FakeEngine::aborted() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return aborted_;
}

size_t FakeEngine::running() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return running_.size();
}

bool FakeEngine::wait_for(const std::function<bool(size_t, size_t)>& pred, int ms) const {
  std::unique_lock<std::recursive_mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(ms),
                      [&] { return pred(submitted_.size(), aborted_.size()); });
}

std::string FakeEngine::expected_text(int max_tokens) const {
  std::string s;
  for (int i = 0; i < max_tokens; ++i) {
    s += tok_.decode(std::vector<int32_t>{script_ids_[size_t(i) % script_ids_.size()]});
  }
  return s;
}

void FakeEngine::emit(Running& r, protocol::RequestOutput& o) const {
  const int32_t id = script_ids_[size_t(r.emitted) % script_ids_.size()];
  ++r.emitted;
  o.new_token_ids.push_back(id);
  const std::string piece = tok_.decode(std::vector<int32_t>{id});
  if (r.req.sampling.logprobs) {
    sampling::SampleResult s{.token = id, .logprob = -0.25f};
    for (int k = 0; k < r.req.sampling.top_logprobs; ++k) {
      s.top.push_back(
          {.token = script_ids_[size_t(k) % script_ids_.size()], .logprob = -0.25f - float(k)});
    }
    o.logprobs.push_back(s);
  }
  const size_t before = r.text.size();
  r.text += piece;
  for (const auto& stop : r.req.stopping.stop) {
    const size_t at = r.text.find(stop);
    if (at == std::string::npos) continue;
    o.new_text += at > before ? r.text.substr(before, at - before) : "";
    o.finish = protocol::FinishReason::kStop;
    o.matched_stop = stop;
    return;
  }
  o.new_text += piece;
  if (opt_.eos_after >= 0 && r.emitted >= opt_.eos_after) {
    o.finish = protocol::FinishReason::kStop;
  } else if (r.emitted >= r.req.stopping.max_tokens) {
    o.finish = protocol::FinishReason::kLength;
  }
}

void FakeEngine::loop() {
  std::unique_lock<std::recursive_mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || (!running_.empty() && !held_); });
    if (stop_) return;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(opt_.step_ms));
    lock.lock();
    // Build this step's outputs under the lock, call back outside it (as a real engine would).
    std::vector<std::pair<OutputCallback, protocol::RequestOutput>> outs;
    for (auto it = running_.begin(); it != running_.end();) {
      Running& r = it->second;
      protocol::RequestOutput o;
      o.request_id = it->first;
      o.prompt_tokens = int(r.req.prompt_ids.size());
      if (r.abort) {
        o.finish = protocol::FinishReason::kAbort;
      } else if (opt_.error_after >= 0 && r.emitted >= opt_.error_after) {
        o.finish = protocol::FinishReason::kError;
        o.error = "fake failure";
      } else {
        for (int t = 0; t < opt_.tokens_per_step && !o.finished(); ++t) emit(r, o);
      }
      o.completion_tokens = r.emitted;
      outs.emplace_back(r.cb, std::move(o));
      it = outs.back().second.finished() ? running_.erase(it) : std::next(it);
    }
    lock.unlock();
    for (auto& [cb, o] : outs) cb(o);
    metrics_.counter_add("tessera_fake_engine_steps_total", "steps of the fake engine");
    lock.lock();
  }
}

}  // namespace tessera::server::testing
