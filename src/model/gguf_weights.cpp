#include "tessera/core/error.h"
#include "tessera/model/gguf.h"
#include "tessera/model/weights.h"

namespace tessera::model {
namespace {

class GgufWeights final : public WeightSource {
 public:
  explicit GgufWeights(GgufFile file) : file_(std::move(file)), config_(config_from_gguf(file_)) {}
  const ModelConfig& config() const override { return config_; }
  bool has(const std::string& name) const override { return file_.find_tensor(name) != nullptr; }
  Tensor get(const std::string& name) const override { return file_.tensor(name); }
  std::string describe() const override {
    return file_.path() + " (GGUF v" + std::to_string(file_.version()) + ")";
  }

 private:
  GgufFile file_;
  ModelConfig config_;
};

}  // namespace

std::unique_ptr<WeightSource> open_gguf_weights(const std::string& path) {
  return std::make_unique<GgufWeights>(GgufFile::open(path));
}

}  // namespace tessera::model
