// Shared by the fuzz targets (tests/fuzz): the libFuzzer entry point each defines, and small
// helpers. A target returns 0 for every input; it crashes (ASan/UBSan report or abort) only on a
// real defect, and throws nothing: tessera::Error is the expected outcome of bad input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace tessera::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A property the target checks: a violated one is a finding, reported and aborted on.
#define FUZZ_CHECK(cond, what)                                                \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "fuzz property violated: %s (%s)\n", what, #cond); \
      std::abort();                                                           \
    }                                                                         \
  } while (0)

}  // namespace tessera::fuzz
