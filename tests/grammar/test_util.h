// Helpers shared by the grammar tests: byte-level vocabularies (a matcher over them is a plain
// string recognizer, the reference for the token-level masks) and random vocabularies.
#pragma once

#include <gtest/gtest.h>

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

// Walks `steps` random tokens (with rollbacks and EOS undone), checking every step's mask
// against the brute-force scan over the byte-level recognizer. Fails through gtest assertions.
inline void check_walk(std::mt19937& rng, const std::string& src,
                       const std::shared_ptr<const Vocabulary>& vocab, int steps) {
  Grammar g = Grammar::parse(src);
  auto bytes_grammar = std::make_shared<const CompiledGrammar>(g, byte_vocab());
  auto compiled = std::make_shared<const CompiledGrammar>(g, vocab);
  Matcher m(compiled);
  std::string history;
  std::vector<size_t> lengths;
  std::vector<uint64_t> mask(vocab->mask_words());
  for (int step = 0; step < steps; ++step) {
    m.fill_mask(mask);
    std::vector<int32_t> allowed;
    bool complete = recognize(bytes_grammar, history).complete;
    ASSERT_EQ(m.is_complete(), complete) << src << "after '" << history << "'";
    for (size_t t = 0; t < vocab->size(); ++t) {
      auto tok = static_cast<int32_t>(t);
      std::string_view b = vocab->bytes(tok);
      bool want = vocab->is_eos(tok)
                      ? complete
                      : !b.empty() && recognize(bytes_grammar, history + std::string(b)).prefix;
      ASSERT_EQ(mask_bit(mask, t), want) << src << "after '" << history << "' token '" << b << "'";
      if (want) {
        allowed.push_back(tok);
      } else if (t % 7 == 0) {
        ASSERT_FALSE(m.accept(tok));  // refused, and the state is unchanged
      }
    }
    if (allowed.empty()) return;
    if (!lengths.empty() && std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
      size_t n = 1 + std::uniform_int_distribution<size_t>(0, lengths.size() - 1)(rng);
      m.rollback(n);
      for (size_t k = 0; k < n; ++k) {
        history.resize(history.size() - lengths.back());
        lengths.pop_back();
      }
      continue;
    }
    int32_t tok = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    ASSERT_TRUE(m.accept(tok));
    if (vocab->is_eos(tok)) {
      ASSERT_TRUE(m.is_terminated());
      m.rollback(1);  // EOS can be undone like any token (a preempted sequence)
      ASSERT_FALSE(m.is_terminated());
      continue;
    }
    history += vocab->bytes(tok);
    lengths.push_back(vocab->bytes(tok).size());
  }
}

}  // namespace tessera::grammar::testing
