// GGUF reader on arbitrary bytes: header, metadata (nested arrays), tensor infos, the model
// config derived from it and every tensor view.
#include <vector>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/model/gguf.h"
#include "tessera/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  try {
    const model::GgufFile f = model::GgufFile::parse(std::vector<uint8_t>(data, data + size));
    for (const auto& t : f.tensors()) {
      try {
        const Tensor v = f.tensor(t.name);
        FUZZ_CHECK(v.nbytes() <= size, "a tensor view larger than the file");
      } catch (const Error&) {
      }
    }
    (void)model::config_from_gguf(f);
  } catch (const Error&) {
  }
  return 0;
}
