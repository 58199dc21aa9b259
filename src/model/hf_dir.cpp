// Hugging Face model directory: config.json plus single-file or sharded safetensors weights.
#include "tessera/model/hf_dir.h"

#if TESSERA_HAVE_JSON

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tessera/core/error.h"
#include "tessera/json/bounded_json.h"

namespace tessera::model {

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, "cannot read ", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str(), json::kModelFileLimits, path.string());
  } catch (const Error& e) {
    fail(ErrorCode::kCorruptFile, e.what());
  }
}

std::optional<std::string> if_exists(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p.string();
  return std::nullopt;
}

// Shard names come from a file we do not control: keep them inside the model directory.
void check_shard_name(const fs::path& index, const std::string& file) {
  const fs::path p(file);
  bool escapes = file.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  if (escapes)
    fail(ErrorCode::kCorruptFile, index.string(), " names shard '", file,
         "', which is not a file inside the model directory");
}

}  // namespace

bool HfDirectory::looks_like(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(fs::path(dir) / "config.json", ec);
}

HfDirectory HfDirectory::open(const std::string& dir) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(ErrorCode::kNotFound, dir, " is not a directory");
  HfDirectory d;
  d.path_ = dir;
  const fs::path config = root / "config.json";
  if (!fs::is_regular_file(config, ec))
    fail(ErrorCode::kNotFound, "no config.json in model directory ", dir);
  d.config_ = std::make_shared<const nlohmann::json>(read_json(config));
  if (!d.config_->is_object())
    fail(ErrorCode::kCorruptFile, config.string(), " is not a JSON object");
  d.tokenizer_json_ = if_exists(root / "tokenizer.json");
  d.tokenizer_config_ = if_exists(root / "tokenizer_config.json");
  d.generation_config_ = if_exists(root / "generation_config.json");

  const fs::path index = root / "model.safetensors.index.json";
  const fs::path single = root / "model.safetensors";
  if (fs::is_regular_file(index, ec)) {
    const nlohmann::json j = read_json(index);
    const auto map = j.is_object() ? j.find("weight_map") : j.end();
    if (map == j.end() || !map->is_object())
      fail(ErrorCode::kCorruptFile, index.string(), " has no \"weight_map\" object");
    std::map<std::string, size_t> shard_of_file;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string())
        fail(ErrorCode::kCorruptFile, index.string(), ": weight_map entry for '", name,
             "' is not a file name");
      const std::string f = file.get<std::string>();
      auto it = shard_of_file.find(f);
      if (it == shard_of_file.end()) {
        check_shard_name(index, f);
        d.shards_.push_back(SafetensorsFile::open((root / f).string()));
        it = shard_of_file.emplace(f, d.shards_.size() - 1).first;
      }
      if (!d.shards_[it->second].has(name))
        fail(ErrorCode::kCorruptFile, index.string(), " maps tensor '", name, "' to ", f,
             ", which does not contain it");
      d.index_.emplace(name, it->second);
    }
  } else if (fs::is_regular_file(single, ec)) {
    d.shards_.push_back(SafetensorsFile::open(single.string()));
    for (const auto& t : d.shards_[0].tensors()) d.index_.emplace(t.name, 0);
  } else {
    fail(ErrorCode::kNotFound, "no model.safetensors or model.safetensors.index.json in ", dir);
  }
  return d;
}

Tensor HfDirectory::tensor(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(ErrorCode::kNotFound, "tensor '", name, "' not found in ", path_);
  return shards_[it->second].tensor(name);
}

std::vector<std::string> HfDirectory::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, shard] : index_) names.push_back(name);
  return names;
}

}  // namespace tessera::model

#endif  // TESSERA_HAVE_JSON
