// bench workloads: the list of requests a run sends. Synthetic prompts (random vocabulary words
// re-tokenized to the asked length on the target's tokenizer), shared-prefix prompts (a long
// system prompt shared by many requests, for prefix caching) and ShareGPT conversations. Built
// once before the run from a fixed seed; the result is plain data.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tessera/tokenizer/tokenizer.h"

namespace tessera::bench {

struct RequestSpec {
  std::string system_prompt;  // the shared prefix ("" = none)
  std::string prompt;         // the user turn (chat) or the rest of the prompt (completions)
  int64_t input_tokens = 0;   // tokens of system_prompt + prompt on the workload's tokenizer
  int64_t output_tokens = 0;  // max_tokens to ask for
};

// Makes text of a given token length. With a tokenizer the text is built from whole-word vocabulary
// tokens and re-tokenized until it has the asked length (within +-1); without one (`nullptr`) it
// uses common English words, one per token, which most tokenizers keep as single tokens (an
// approximation, said so in the run's config).
class PromptBuilder {
 public:
  explicit PromptBuilder(const tokenizer::Tokenizer* tok);
  bool exact() const { return tok_ != nullptr; }
  std::string text(int64_t num_tokens, std::mt19937_64& rng) const;
  int64_t count(
      const std::string& text) const;  // tokens without BOS/EOS; chars/4 without a tokenizer

 private:
  const tokenizer::Tokenizer* tok_;
  std::vector<std::string> words_;  // each a leading space + one token's text
};

// Integer lengths uniform in [mean*(1-range_ratio), mean*(1+range_ratio)] (vLLM's random dataset).
std::vector<int64_t> sample_lengths(int64_t mean, double range_ratio, size_t n,
                                    std::mt19937_64& rng);

struct SyntheticParams {
  size_t num_requests = 0;
  int64_t input_len = 128, output_len = 128;
  double range_ratio = 0.0;
  uint64_t seed = 0;
  // Shared prefix: num_prefixes prompts of prefix_len tokens, request i uses prefix i %
  // num_prefixes.
  int64_t prefix_len = 0;
  int64_t num_prefixes = 1;
};
std::vector<RequestSpec> make_synthetic(const SyntheticParams& p, const PromptBuilder& pb);

struct ShareGptParams {
  size_t num_requests = 0;
  uint64_t seed = 0;
  int64_t output_len = 0;  // > 0 overrides the reply's length
  // vLLM's filters: too short to be useful, or too long for a 2k context.
  int64_t min_len = 4, max_prompt_len = 1024, max_total_len = 2048;
};
// A JSON list of {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}, ...]}:
// the first human turn is the prompt, the reply after it sets the output length.
std::vector<RequestSpec> load_sharegpt(const std::string& path, const ShareGptParams& p,
                                       const PromptBuilder& pb);

}  // namespace tessera::bench
