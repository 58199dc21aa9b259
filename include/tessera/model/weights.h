// WeightSource: named weights of a model under GGUF's canonical names (token_embd.weight,
// blk.N.attn_q.weight, ...), whatever file they came from. Implementations keep their file
// mapped; the Tensors they return borrow from it and keep it alive.
#pragma once

#include <memory>
#include <string>

#include "tessera/core/tensor.h"
#include "tessera/model/model_config.h"

namespace tessera::model {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // Throws kNotFound naming the weight and the file.
  virtual Tensor get(const std::string& name) const = 0;
  virtual std::string describe() const = 0;  // file path and format, for logs
};

// A GGUF file's weights (config from its metadata).
std::unique_ptr<WeightSource> open_gguf_weights(const std::string& path);

}  // namespace tessera::model

namespace tessera::model {
// A Hugging Face model directory's weights (config.json + *.safetensors), under GGUF names.
// Needs the JSON build (TESSERA_HAVE_JSON); throws kUnsupported otherwise.
std::unique_ptr<WeightSource> open_hf_weights(const std::string& dir);
// Opens a GGUF file or a Hugging Face directory, whichever `path` is.
std::unique_ptr<WeightSource> open_weights(const std::string& path);
}  // namespace tessera::model
