// The grammar front ends and the matcher on arbitrary input: the first byte picks JSON Schema,
// GBNF or regex for the rest; whatever compiles is run for a few steps (mask, accept the first
// allowed token) over a small vocabulary whose tokens span terminals and split UTF-8. Hostile
// input must end in an Error within the size caps, never a crash or a hang.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/grammar/matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  if (size < 1 || size > 4096) return 0;
  static const auto vocab = [] {
    std::vector<std::string> toks = {
        "{",   "}",    "[",    "]",        "\"", ":",   ",",    " ",     "\n",   "a",
        "b",   "0",    "1",    "-",        ".",  "e",   "true", "false", "null", "\"a\"",
        "\":", "\xC3", "\xA9", "\xC3\xA9", "ab", "{\"", "\"}",  "x",     ""};
    return std::make_shared<const grammar::Vocabulary>(toks, std::vector<int32_t>{28});
  }();
  const std::string text(fuzz::as_text(data + 1, size - 1));
  try {
    std::string gbnf;
    switch (data[0] % 3) {
      case 0: {
        auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
        if (schema.is_discarded()) return 0;
        gbnf = grammar::json_schema_to_gbnf(schema);
        break;
      }
      case 1:
        gbnf = text;
        break;
      default:
        gbnf = grammar::regex_to_gbnf(text);
        break;
    }
    grammar::GrammarLimits limits;
    limits.max_elements = 20'000;
    auto g = std::make_shared<const grammar::CompiledGrammar>(grammar::Grammar::parse(gbnf, limits),
                                                              vocab);
    grammar::Matcher m(g);
    std::vector<uint64_t> mask(vocab->mask_words());
    for (int step = 0; step < 8; ++step) {
      m.fill_mask(mask);
      int32_t pick = -1;
      for (int32_t t = 0; t < static_cast<int32_t>(vocab->size()) && pick < 0; ++t)
        if ((mask[0] >> t) & 1) pick = t;
      if (pick < 0) break;
      FUZZ_CHECK(m.accept(pick), "a token in the mask was refused");
    }
  } catch (const Error&) {
  }
  return 0;
}
