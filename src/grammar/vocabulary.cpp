// Vocabulary: builds the flat preorder byte trie over the token strings (see vocabulary.h).
#include "tessera/grammar/vocabulary.h"

#include <algorithm>

#include "tessera/core/error.h"

namespace tessera::grammar {
namespace {
constexpr size_t kMaxTokenBytes = 4096;  // bounds the trie's depth (and the build's recursion)
}

Vocabulary::Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_tokens)
    : bytes_(std::move(token_bytes)), eos_(std::move(eos_tokens)) {
  for (int32_t e : eos_)
    if (e < 0 || static_cast<size_t>(e) >= bytes_.size())
      fail(ErrorCode::kInvalidArgument, "EOS token ", e, " outside the vocabulary");
  for (size_t t = 0; t < bytes_.size(); ++t) {
    if (bytes_[t].size() > kMaxTokenBytes)
      fail(ErrorCode::kInvalidArgument, "token ", t, " is over ", kMaxTokenBytes, " bytes");
    if (!bytes_[t].empty() && !is_eos(static_cast<int32_t>(t)))
      trie_tokens_.push_back(static_cast<int32_t>(t));
  }
  std::sort(trie_tokens_.begin(), trie_tokens_.end(),
            [&](int32_t a, int32_t b) { return bytes(a) < bytes(b); });
  build(0, static_cast<uint32_t>(trie_tokens_.size()), 0, 0);
}

// The node for the tokens [lo, hi) of the sorted list, which share their first `depth` bytes; its
// own tokens (exactly `depth` long) sort first, then one child per next byte.
void Vocabulary::build(uint32_t lo, uint32_t hi, uint32_t depth, uint8_t byte) {
  auto idx = static_cast<uint32_t>(trie_.size());
  trie_.push_back(TrieNode{byte, depth, 0, lo, lo, hi});
  max_depth_ = std::max(max_depth_, depth);
  uint32_t i = lo;
  while (i < hi && bytes(trie_tokens_[i]).size() == depth) ++i;
  trie_[idx].tokens_end = i;
  while (i < hi) {
    auto b = static_cast<uint8_t>(bytes(trie_tokens_[i])[depth]);
    uint32_t j = i;
    while (j < hi && static_cast<uint8_t>(bytes(trie_tokens_[j])[depth]) == b) ++j;
    build(i, j, depth + 1, b);
    i = j;
  }
  trie_[idx].next = static_cast<uint32_t>(trie_.size());
}

bool Vocabulary::is_eos(int32_t token) const {
  return std::find(eos_.begin(), eos_.end(), token) != eos_.end();
}

}  // namespace tessera::grammar
