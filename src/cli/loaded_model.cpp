#include "loaded_model.h"

#include "model_registry.h"
#include "tessera/core/error.h"
#include <filesystem>

#include "tessera/engine/llm_engine.h"
#include "tessera/ops/backend.h"

namespace tessera::cli {

LoadedModel load_model(const std::string& model_arg, bool with_weights, Device device) {
  LoadedModel m;
  m.path = resolve_model_path(model_arg);
  m.tokenizer = engine::load_tokenizer(m.path);
  if (with_weights) {
    m.weights = model::open_weights(m.path);
    m.model = std::make_unique<model::LlamaModel>(*m.weights, model::ShardSpec{}, nullptr,
                                                  ops::make_allocator(device));
    m.model->check_device_support();
  }
  return m;
}

}  // namespace tessera::cli
