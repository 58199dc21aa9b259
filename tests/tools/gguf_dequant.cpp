// Test hook for tests/python/test_kquant.py: dequantizes every tensor of a GGUF file with
// Tessera's reference (ops::ref) and fast CPU (ops::cpu) dequantizers, so Python can compare both
// with the gguf package's numpy dequantizer. Usage: tessera_gguf_dequant FILE OUT_DIR; writes
// OUT_DIR/NAME.ref.f32 and OUT_DIR/NAME.cpu.f32 (raw little-endian float32, rows in file order).
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "tessera/model/gguf.h"
#include "tessera/ops/ops.h"

namespace {

void write_floats(const std::string& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FILE OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    using namespace tessera;
    const auto file = model::GgufFile::open(argv[1]);
    for (const auto& info : file.tensors()) {
      const Tensor t = file.tensor(info.name);
      const int64_t cols = t.dim(t.ndim() - 1), rows = t.numel() / cols;
      std::vector<float> ref(static_cast<size_t>(t.numel())), cpu(ref.size());
      const auto* base = static_cast<const uint8_t*>(t.data());
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = base + static_cast<size_t>(r) * t.row_bytes();
        ops::ref::dequantize_row(t.dtype(), row, ref.data() + r * cols, cols);
        ops::cpu::dequantize_row(t.dtype(), row, cpu.data() + r * cols, cols);
      }
      const std::string stem = std::string(argv[2]) + "/" + info.name;
      write_floats(stem + ".ref.f32", ref);
      write_floats(stem + ".cpu.f32", cpu);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
