// Where the engine tests find the default model and the tessera binary (env TESSERA_BIN, else
// <build>/tessera), and the small worker they run; tests that need them skip when either is
// missing.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tessera/worker/worker.h"

namespace tessera::engine::testing {

inline std::string model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline std::string tessera_bin() {
  if (const char* b = std::getenv("TESSERA_BIN")) return b;
  const std::string guess = std::string(TESSERA_BINARY_DIR) + "/tessera";
  return std::filesystem::exists(guess) ? guess : "";
}

// A worker with a small fixed KV pool (64 blocks of 16 tokens) on the default model. fp32
// activations: the tests compare layouts and executors, whose fp32 sums differ only in order; int8
// activations would turn such last-bit differences into whole rounding steps now and then.
inline worker::WorkerParams small_worker() {
  return {.model_path = model_path(),
          .num_blocks = 64,
          .block_size = 16,
          .kv_cache_bytes = 0,
          .cpu_activations = ops::cpu::Activations::kF32};
}

}  // namespace tessera::engine::testing

#define SKIP_WITHOUT_MODEL_OR_BIN()                                         \
  do {                                                                      \
    if (!std::filesystem::exists(::tessera::engine::testing::model_path())) \
      GTEST_SKIP() << "model missing";                                      \
    if (::tessera::engine::testing::tessera_bin().empty())                  \
      GTEST_SKIP() << "TESSERA_BIN unset and no build/tessera";             \
  } while (0)
