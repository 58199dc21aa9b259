// Test helper: writes safetensors images in memory (header padded to 8 bytes like the reference
// writer) and small model directories on disk. Owned by the model tests only.
#pragma once

#if TESSERA_HAVE_JSON

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace tessera::model::testing {

using StBytes = std::vector<uint8_t>;

struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  StBytes data;
};

// Header text (no length prefix) followed by raw data.
inline StBytes safetensors_raw(const std::string& header, const StBytes& data) {
  // Sized once and filled with memcpy: GCC 12 misreports vector::insert here (-Warray-bounds).
  StBytes b(8 + header.size() + data.size());
  const uint64_t len = header.size();
  std::memcpy(b.data(), &len, 8);
  if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
  return b;
}

inline StBytes make_safetensors(const std::vector<StTensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}, {"ignored", 3}};
  StBytes data;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  std::string text = h.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return safetensors_raw(text, data);
}

inline StBytes random_st_bytes(std::mt19937& rng, size_t n) {
  StBytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

inline void write_file(const std::filesystem::path& p, const void* data, size_t n) {
  std::ofstream out(p, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
inline void write_file(const std::filesystem::path& p, const StBytes& b) {
  write_file(p, b.data(), b.size());
}
inline void write_file(const std::filesystem::path& p, const std::string& s) {
  write_file(p, s.data(), s.size());
}

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("tessera_files_test_" + std::to_string(std::random_device{}()) + "_" +
             std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace tessera::model::testing

#endif  // TESSERA_HAVE_JSON
