// Hugging Face tokenizer.json on arbitrary bytes (through a file, as the loader reads one), then
// an encode/decode of a fixed text with whatever tokenizer it made.
#include <unistd.h>

#include <fstream>
#include <string>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const std::string path = "/tmp/tessera_fuzz_tokenizer_" + std::to_string(getpid()) + ".json";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  try {
    const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_hf_json(path);
    const auto ids = tok.encode("Hello world <|im_end|> \xC3\xA9t\xC3\xA9 123");
    for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id outside the vocab");
    (void)tok.decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
