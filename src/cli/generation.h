// One generation in this process: prefill the prompt in chunks, then decode token by token with
// the sampler, streaming text through the incremental detokenizer. Used by `generate` and `chat`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "loaded_model.h"
#include "tessera/model/local_runner.h"
#include "tessera/sampling/sampler.h"

namespace tessera::cli {

struct GenerateParams {
  int max_tokens = 256;
  int prefill_chunk = 512;
  bool ignore_eos = false;
  sampling::SamplingParams sampling;
};

struct GenerateResult {
  std::vector<int32_t> token_ids;
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  double prefill_seconds = 0;
  double decode_seconds = 0;
  size_t prompt_tokens = 0;
  size_t reused_tokens = 0;  // prompt tokens already in the KV cache (chat turns)
};

// A session keeps one sequence's KV cache between calls, so a chat turn only prefills what is new.
class Session {
 public:
  explicit Session(const LoadedModel& m, int context_tokens);
  // Generates after `prompt` (the whole conversation so far, as token ids).
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateParams& p,
                          const std::function<void(const std::string&)>& on_text);

 private:
  const LoadedModel& m_;
  model::LocalRunner runner_;
  int seq_ = -1;
  std::vector<int32_t> cached_;  // tokens whose K/V are in the cache, in order
};

}  // namespace tessera::cli
