// safetensors header and tensor table on arbitrary bytes.
#include <vector>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  try {
    const model::SafetensorsFile f =
        model::SafetensorsFile::parse(std::vector<uint8_t>(data, data + size));
    for (const auto& name : f.tensor_names()) {
      try {
        const Tensor v = f.tensor(name);
        FUZZ_CHECK(v.nbytes() <= size, "a tensor view larger than the file");
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
