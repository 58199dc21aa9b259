// Constrained decoding cost: the grammar mask per decode step (µs) for a JSON Schema at the
// default model's vocabulary (49,152 tokens) and at a synthetic 128k one, cold (first use of each
// stack top fills the mask cache) and warm; and one constrained row's sampling (mask + masked
// sample + advance) beside an unconstrained row's, which is what a constrained request adds to a
// shared batch step. Steps follow random valid documents (a seeded walk over allowed tokens).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "tessera/engine/llm_engine.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/matcher.h"
#include "tessera/sampling/sampler.h"

namespace {

using tessera::grammar::CompiledGrammar;
using tessera::grammar::Matcher;
using tessera::grammar::Vocabulary;

const char* kSchema = R"({
  "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
      "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"],
      "additionalProperties": false}},
  "type": "object",
  "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 24},
    "age": {"type": "integer"}, "role": {"enum": ["admin", "user", "guest"]},
    "home": {"$ref": "#/$defs/address"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3},
    "active": {"type": "boolean"}},
  "required": ["name", "age", "role", "home", "tags", "active"], "additionalProperties": false})";

std::shared_ptr<const Vocabulary> model_vocab() {
  static std::shared_ptr<const Vocabulary> v = []() -> std::shared_ptr<const Vocabulary> {
    const char* env = std::getenv("TESSERA_BENCH_MODEL");
    std::string path = env ? env
                           : std::string(std::getenv("HOME")) +
                                 "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) return nullptr;
    return tessera::engine::grammar_vocabulary(*tessera::engine::load_tokenizer(path));
  }();
  return v;
}

// The model's tokens plus random printable ones (1-8 bytes) up to 128k, with its stop tokens.
std::shared_ptr<const Vocabulary> synthetic_128k() {
  static std::shared_ptr<const Vocabulary> v = []() -> std::shared_ptr<const Vocabulary> {
    auto base = model_vocab();
    if (!base) return nullptr;
    std::vector<std::string> toks;
    for (size_t t = 0; t < base->size(); ++t)
      toks.emplace_back(base->bytes(static_cast<int32_t>(t)));
    std::mt19937 rng(128);
    std::uniform_int_distribution<int> len(1, 8), ch(32, 126);
    while (toks.size() < 128'000) {
      std::string s;
      for (int n = len(rng); n > 0; --n) s += static_cast<char>(ch(rng));
      toks.push_back(std::move(s));
    }
    return std::make_shared<const Vocabulary>(
        std::move(toks),
        std::vector<int32_t>(base->eos_tokens().begin(), base->eos_tokens().end()));
  }();
  return v;
}

std::vector<int32_t> allowed_tokens(const std::vector<uint64_t>& mask) {
  std::vector<int32_t> out;
  for (size_t w = 0; w < mask.size(); ++w)
    for (uint64_t bits = mask[w]; bits; bits &= bits - 1)
      out.push_back(static_cast<int32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits))));
  return out;
}

// state.range(0): 0 = the model's vocabulary, 1 = synthetic 128k; range(1): 1 = warm cache.
// Manual time: only fill_mask is timed.
void BM_MaskPerStep(benchmark::State& state) {
  auto vocab = state.range(0) == 0 ? model_vocab() : synthetic_128k();
  if (!vocab) return state.SkipWithError("default model not downloaded");
  const std::string gbnf =
      tessera::grammar::json_schema_to_gbnf(nlohmann::ordered_json::parse(kSchema));
  auto grammar =
      std::make_shared<const CompiledGrammar>(tessera::grammar::Grammar::parse(gbnf), vocab);
  std::vector<uint64_t> mask(vocab->mask_words());
  std::mt19937 rng(1);
  Matcher m(grammar);
  if (state.range(1) == 1)  // warm: the cache as a serving worker's is after a few documents
    for (int i = 0; i < 3000; ++i) {
      if (m.is_terminated()) m = Matcher(grammar);
      m.fill_mask(mask);
      auto ok = allowed_tokens(mask);
      m.accept(ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)]);
    }
  for (auto _ : state) {
    if (m.is_terminated()) {
      if (state.range(1) == 0)  // cold: a fresh cache for every document
        grammar =
            std::make_shared<const CompiledGrammar>(tessera::grammar::Grammar::parse(gbnf), vocab);
      m = Matcher(grammar);
    }
    auto t0 = std::chrono::steady_clock::now();
    m.fill_mask(mask);
    auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    auto ok = allowed_tokens(mask);
    m.accept(ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)]);
  }
  state.counters["vocab"] = static_cast<double>(vocab->size());
  state.counters["cache_entries"] = static_cast<double>(grammar->cache_size());
}
BENCHMARK(BM_MaskPerStep)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"vocab128k", "warm"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// One row's sampling at the model's vocabulary, temperature 1: range(0) = 1 constrained (mask,
// masked sample, advance the matcher), 0 unconstrained. The difference is what one constrained
// sequence adds to a batch step it shares with others (the forward pass is the same).
void BM_SampleRow(benchmark::State& state) {
  auto vocab = model_vocab();
  if (!vocab) return state.SkipWithError("default model not downloaded");
  const bool constrained = state.range(0) == 1;
  const std::string gbnf =
      tessera::grammar::json_schema_to_gbnf(nlohmann::ordered_json::parse(kSchema));
  auto grammar =
      std::make_shared<const CompiledGrammar>(tessera::grammar::Grammar::parse(gbnf), vocab);
  const int n = static_cast<int>(vocab->size());
  std::vector<float> logits(static_cast<size_t>(n)), row;
  std::mt19937 rng(2);
  std::normal_distribution<float> d(0.f, 3.f);
  for (auto& x : logits) x = d(rng);
  std::vector<uint64_t> mask(vocab->mask_words());
  tessera::sampling::Sampler sampler({.temperature = 1.0f, .seed = 7}, n);
  Matcher m(grammar);
  for (int i = 0; i < 2000; ++i) {  // warm the cache as a serving worker's would be
    if (m.is_terminated()) m = Matcher(grammar);
    m.fill_mask(mask);
    row = logits;
    m.accept(sampler.sample(row, mask).token);
  }
  for (auto _ : state) {
    row = logits;
    if (!constrained) {
      benchmark::DoNotOptimize(sampler.sample(row).token);
      continue;
    }
    if (m.is_terminated()) m = Matcher(grammar);
    m.fill_mask(mask);
    m.accept(sampler.sample(row, mask).token);
  }
}
BENCHMARK(BM_SampleRow)->Arg(0)->Arg(1)->ArgName("constrained")->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
