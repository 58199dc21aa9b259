// A Hugging Face model directory: config.json, optional tokenizer files, and the weights in
// model.safetensors or in shards listed by model.safetensors.index.json ("weight_map"). Opens and
// checks every shard up front; tensors borrow the shard mappings. Immutable after open(). Only
// built with nlohmann_json (TESSERA_HAVE_JSON).
#pragma once

#if TESSERA_HAVE_JSON

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/tensor.h"
#include "tessera/model/safetensors.h"

namespace tessera::model {

class HfDirectory {
 public:
  // Throws kNotFound when config.json or the weights are missing, kCorruptFile when a JSON file
  // or a shard is malformed or the index names a tensor its shard lacks.
  static HfDirectory open(const std::string& dir);
  // True when `dir` looks like a model directory (has config.json), for format detection.
  static bool looks_like(const std::string& dir);

  const std::string& path() const { return path_; }
  const nlohmann::json& config() const { return *config_; }
  // Paths of the tokenizer files when present.
  const std::optional<std::string>& tokenizer_json() const { return tokenizer_json_; }
  const std::optional<std::string>& tokenizer_config() const { return tokenizer_config_; }
  const std::optional<std::string>& generation_config() const { return generation_config_; }

  bool has(std::string_view name) const { return index_.find(name) != index_.end(); }
  Tensor tensor(std::string_view name) const;     // throws kNotFound naming the tensor
  std::vector<std::string> tensor_names() const;  // sorted
  const std::vector<SafetensorsFile>& shards() const { return shards_; }

 private:
  std::string path_;
  std::shared_ptr<const nlohmann::json> config_;
  std::optional<std::string> tokenizer_json_;
  std::optional<std::string> tokenizer_config_;
  std::optional<std::string> generation_config_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t, std::less<>> index_;  // tensor name -> shard
};

}  // namespace tessera::model

#endif  // TESSERA_HAVE_JSON
