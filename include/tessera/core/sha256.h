// SHA-256 (FIPS 180-4), used to verify downloaded model files. Stateless helpers; the streaming
// Sha256 object is owned by its caller.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace tessera {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> data);
  std::array<uint8_t, 32> finish();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::span<const uint8_t> data);
// Hex digest of a file's contents; throws kNotFound when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace tessera
