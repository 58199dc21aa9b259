// Vocabulary: the bytes each token id stands for (decoded, so byte-level BPE's mapping and
// SentencePiece's ▁ are already undone) and a byte trie over them, laid out flat in preorder so
// that a mask computation walks it as one loop and skips a dead subtree in one jump. Built once
// per model and shared (immutable) by every compiled grammar for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::grammar {

struct TrieNode {
  uint8_t byte = 0;                           // the byte that leads here from the parent
  uint32_t depth = 0;                         // bytes from the root (the root is 0)
  uint32_t next = 0;                          // index of the first node after this subtree
  uint32_t tokens_begin = 0, tokens_end = 0;  // tokens ending here: trie_tokens()[begin, end)
  uint32_t subtree_end = 0;                   // tokens in the subtree: [tokens_begin, subtree_end)
};

class Vocabulary {
 public:
  // token_bytes[i]: token i's bytes; empty for special tokens, which a grammar never allows.
  // eos_tokens: the ids that end a sequence, allowed exactly when the grammar is complete.
  Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_tokens);

  size_t size() const { return bytes_.size(); }
  size_t mask_words() const { return (bytes_.size() + 63) / 64; }
  std::string_view bytes(int32_t token) const { return bytes_[static_cast<size_t>(token)]; }
  bool is_eos(int32_t token) const;
  std::span<const int32_t> eos_tokens() const { return eos_; }
  const std::vector<TrieNode>& trie() const { return trie_; }
  const std::vector<int32_t>& trie_tokens() const { return trie_tokens_; }
  uint32_t max_depth() const { return max_depth_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> trie_tokens_;  // token ids sorted by bytes (preorder of the trie)
  uint32_t max_depth_ = 0;

  void build(uint32_t lo, uint32_t hi, uint32_t depth, uint8_t byte);
};

}  // namespace tessera::grammar
