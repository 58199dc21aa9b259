// The YAML topology an operator writes, on arbitrary text: every failure is a tessera::Error.
#include <string>

#include "fuzz_target.h"
#include "tessera/config/topology.h"
#include "tessera/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  try {
    (void)config::parse_topology(fuzz::as_text(data, size), "fuzz.yaml");
  } catch (const Error&) {
  }
  return 0;
}
