#include "generation.h"

#include <algorithm>
#include <chrono>

#include "tessera/core/error.h"
#include "tessera/kv_cache/block_allocator.h"
#include "tessera/tokenizer/detokenizer.h"

namespace tessera::cli {
namespace {
constexpr int kBlockSize = 16;
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Session::Session(const LoadedModel& m, int context_tokens)
    : m_(m),
      runner_(*m.model, model::LocalRunnerParams{
                            .num_blocks = kv_cache::blocks_for(context_tokens, kBlockSize) + 1,
                            .block_size = kBlockSize}) {}

GenerateResult Session::generate(const std::vector<int32_t>& prompt, const GenerateParams& p,
                                 const std::function<void(const std::string&)>& on_text) {
  if (prompt.empty()) fail(ErrorCode::kInvalidArgument, "empty prompt");
  GenerateResult r;
  r.prompt_tokens = prompt.size();
  // Reuse the cached prefix when the new prompt extends it (chat turns); else start over.
  const bool extends = seq_ >= 0 && cached_.size() < prompt.size() &&
                       std::equal(cached_.begin(), cached_.end(), prompt.begin());
  if (!extends) {
    if (seq_ >= 0) runner_.free_sequence(seq_);
    seq_ = runner_.add_sequence();
    cached_.clear();
  }
  r.reused_tokens = cached_.size();

  sampling::Sampler sampler(p.sampling, m_.model->config().vocab_size);
  sampler.set_prompt(prompt);
  tokenizer::IncrementalDecoder detok(*m_.tokenizer);
  const auto& stops = m_.tokenizer->stop_ids();

  auto t0 = std::chrono::steady_clock::now();
  Tensor logits;
  for (size_t i = cached_.size(); i < prompt.size(); i += static_cast<size_t>(p.prefill_chunk)) {
    const size_t n = std::min(prompt.size() - i, static_cast<size_t>(p.prefill_chunk));
    const model::LocalRunner::Chunk chunk{.seq = seq_, .tokens = {prompt.data() + i, n}};
    logits = runner_.step({&chunk, 1});
  }
  cached_ = prompt;
  r.prefill_seconds = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  for (int step = 0; step < p.max_tokens; ++step) {
    const Tensor host = to_host(logits);  // sampling runs on the host
    const int32_t tok = sampler.sample(host.f32()).token;
    const bool is_stop = !p.ignore_eos && std::find(stops.begin(), stops.end(), tok) != stops.end();
    if (is_stop) {
      r.finish_reason = "stop";
      break;
    }
    r.token_ids.push_back(tok);
    const std::string piece = detok.push(tok);
    r.text += piece;
    if (on_text && !piece.empty()) on_text(piece);
    if (step + 1 == p.max_tokens) break;
    if (runner_.length(seq_) + 1 > m_.model->config().max_position) break;
    const model::LocalRunner::Chunk chunk{.seq = seq_, .tokens = {&tok, 1}};
    logits = runner_.step({&chunk, 1});
    cached_.push_back(tok);
  }
  const std::string rest = detok.flush();
  r.text += rest;
  if (on_text && !rest.empty()) on_text(rest);
  r.decode_seconds = seconds_since(t0);
  return r;
}

}  // namespace tessera::cli
