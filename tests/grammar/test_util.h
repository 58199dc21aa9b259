// Helpers shared by the grammar tests: byte-level vocabularies (a matcher over them is a plain
// string recognizer, the reference for the token-level masks) and random vocabularies.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tessera/grammar/matcher.h"

namespace tessera::grammar::testing {

// Tokens 0..255 are the single bytes; 256 is EOS.
inline std::shared_ptr<const Vocabulary> byte_vocab() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  bytes.emplace_back();
  return std::make_shared<const Vocabulary>(std::move(bytes), std::vector<int32_t>{256});
}

// Whether `text` is a prefix of the grammar's language (complete: a whole sentence).
struct Recognized {
  bool prefix = false;
  bool complete = false;
};
inline Recognized recognize(const std::shared_ptr<const CompiledGrammar>& byte_grammar,
                            std::string_view text) {
  Matcher m(byte_grammar);
  for (char c : text)
    if (!m.accept(static_cast<uint8_t>(c))) return {};
  return {true, m.is_complete()};
}

inline bool mask_bit(const std::vector<uint64_t>& mask, size_t t) {
  return (mask[t >> 6] >> (t & 63)) & 1;
}

// Random tokens over `alphabet` (1..max_len bytes each, cut anywhere, so multi-byte characters
// get split across tokens), then every single byte of the alphabet, a special (empty) token and
// EOS last.
inline std::shared_ptr<const Vocabulary> random_vocab(std::mt19937& rng, std::string_view alphabet,
                                                      size_t n, size_t max_len) {
  std::vector<std::string> toks;
  for (char c : alphabet) toks.emplace_back(1, c);
  std::uniform_int_distribution<size_t> len(1, max_len), pick(0, alphabet.size() - 1);
  while (toks.size() < n) {
    std::string t;
    for (size_t k = len(rng); k > 0; --k) t += alphabet[pick(rng)];
    toks.push_back(std::move(t));
  }
  toks.emplace_back();  // a special token: never allowed
  toks.emplace_back();  // EOS
  auto eos = static_cast<int32_t>(toks.size() - 1);
  return std::make_shared<const Vocabulary>(std::move(toks), std::vector<int32_t>{eos});
}

}  // namespace tessera::grammar::testing
