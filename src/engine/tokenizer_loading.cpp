// Builds the served model's tokenizer from its file: GGUF tokenizer.ggml.* keys or a Hugging Face
// directory's tokenizer.json (+ tokenizer_config.json); and the byte vocabulary grammars run on.
#include <filesystem>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/engine/llm_engine.h"
#include "tessera/model/gguf.h"
#include "tessera/model/hf_dir.h"

namespace tessera::engine {
namespace {

tokenizer::TokenizerSpec spec_from_gguf(const model::GgufFile& f) {
  tokenizer::TokenizerSpec s;
  const std::string kind = f.get_string("tokenizer.ggml.model");
  if (kind == "gpt2") {
    s.kind = tokenizer::TokenizerSpec::Kind::kByteLevelBpe;
  } else if (kind == "llama") {
    s.kind = tokenizer::TokenizerSpec::Kind::kSentencePieceBpe;
  } else {
    fail(ErrorCode::kUnsupported, "tokenizer model '", kind, "' in ", f.path(),
         " is not supported (supported: gpt2, llama)");
  }
  s.pre = f.get_string("tokenizer.ggml.pre", "default");
  s.tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (f.has("tokenizer.ggml.scores"))
    for (double x : f.get_float_array("tokenizer.ggml.scores"))
      s.scores.push_back(static_cast<float>(x));
  if (f.has("tokenizer.ggml.token_type"))
    for (int64_t x : f.get_int_array("tokenizer.ggml.token_type"))
      s.token_types.push_back(static_cast<int32_t>(x));
  if (f.has("tokenizer.ggml.merges")) s.merges = f.get_string_array("tokenizer.ggml.merges");
  s.bos_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.bos_token_id", -1));
  s.eos_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.eos_token_id", -1));
  s.unk_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.unknown_token_id", -1));
  s.pad_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.padding_token_id", -1));
  const bool spm = s.kind == tokenizer::TokenizerSpec::Kind::kSentencePieceBpe;
  s.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm);
  s.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
  s.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
  s.chat_template = f.get_string("tokenizer.chat_template", "");
  return s;
}

}  // namespace

std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    auto dir = model::HfDirectory::open(path);
    if (!dir.tokenizer_json()) fail(ErrorCode::kNotFound, path, " has no tokenizer.json");
    return std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_hf_json(
        *dir.tokenizer_json(), dir.tokenizer_config().value_or("")));
  }
  return std::make_unique<tokenizer::Tokenizer>(
      tokenizer::Tokenizer::from_spec(spec_from_gguf(model::GgufFile::open(path))));
}

std::shared_ptr<const grammar::Vocabulary> grammar_vocabulary(const tokenizer::Tokenizer& t) {
  std::vector<std::string> bytes(static_cast<size_t>(t.vocab_size()));
  for (int32_t id = 0; id < t.vocab_size(); ++id)
    if (!t.is_special(id)) bytes[static_cast<size_t>(id)] = t.token_bytes(id);
  return std::make_shared<const grammar::Vocabulary>(std::move(bytes), t.stop_ids());
}

std::shared_ptr<const grammar::Vocabulary> grammar_vocabulary(const std::string& model_path) {
  std::unique_ptr<tokenizer::Tokenizer> t;
  try {
    t = load_tokenizer(model_path);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kNotFound) throw;
    TESSERA_LOG_INFO("{}: no tokenizer ({}), so no constrained decoding", model_path, e.what());
    return nullptr;
  }
  return grammar_vocabulary(*t);
}

}  // namespace tessera::engine
