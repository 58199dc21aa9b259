#include "tessera/tokenizer/detokenizer.h"

#include "tessera/tokenizer/unicode.h"

namespace tessera::tokenizer {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(&tok), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
  if (skip_special_ && tok_->is_special(id)) return {};
  std::string bytes = tok_->token_bytes(id);
  if (at_start_ && !bytes.empty()) {
    if (tok_->adds_space_prefix() && bytes[0] == ' ') bytes.erase(0, 1);
    at_start_ = false;
  }
  pending_ += bytes;
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const int n = utf8_sequence(pending_, pos);
    if (n == 0) break;  // incomplete character: wait for more bytes
    if (n > 0) {
      out.append(pending_, pos, size_t(n));
      pos += size_t(n);
    } else {
      append_utf8(out, 0xFFFD);
      pos += size_t(-n);
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  at_start_ = true;
  return out;
}

}  // namespace tessera::tokenizer
