// LoadedModel: everything the CLI needs to run one model in this process: its weights (mapped),
// the transformer, the tokenizer and the chat template. Built once from a path; immutable after.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "tessera/model/llama.h"
#include "tessera/model/weights.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::cli {

struct LoadedModel {
  std::string path;
  std::unique_ptr<model::WeightSource> weights;
  std::unique_ptr<model::LlamaModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
};

// `model_arg` is a path or a known name. Loads the tokenizer always, the transformer when
// `with_weights` is set (tokenize/template do not need it), on `device` (--backend).
LoadedModel load_model(const std::string& model_arg, bool with_weights = true,
                       Device device = Device::cpu());

}  // namespace tessera::cli
