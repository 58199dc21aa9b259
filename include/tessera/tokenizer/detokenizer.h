// Streaming detokenization: turns generated token ids into text as they arrive without ever
// emitting half a UTF-8 character. Each IncrementalDecoder owns the pending bytes of one stream and
// borrows the Tokenizer, which must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/tokenizer/tokenizer.h"

namespace tessera::tokenizer {

class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special = true);
  // Returns the newly complete text (possibly empty). Bytes that can never become valid UTF-8 are
  // emitted as U+FFFD as soon as that is certain.
  std::string push(int32_t id);
  // Whatever remains (an incomplete tail as U+FFFD); the decoder can be reused afterwards.
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  bool at_start_ = true;  // SPM: the first leading space is dropped like Tokenizer::decode
  std::string pending_;
};

}  // namespace tessera::tokenizer
