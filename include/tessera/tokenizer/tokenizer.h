// Tokenizer: text <-> token ids for byte-level BPE (GPT-2 / SmolLM / Llama-3 / Qwen2 style) and
// SentencePiece-style BPE (Llama 2 / TinyLlama). It is built either from a TokenizerSpec that the
// caller fills from GGUF tokenizer.ggml.* metadata (this module never reads GGUF itself) or from a
// Hugging Face tokenizer.json. A Tokenizer is immutable after construction except for an internal,
// mutex-guarded word cache, so one instance may be shared by threads; copies share the same state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::tokenizer {

// GGUF token types (tokenizer.ggml.token_type).
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// A token split out of raw text before the model runs (HF added_tokens). Tokens whose type is
// control/unknown/user-defined are split out too; this list adds the HF strip flags.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = true;  // needs EncodeOptions::parse_special; skipped by decode(skip_special)
  bool lstrip = false;  // swallows whitespace on its left
  bool rstrip = false;  // swallows whitespace on its right
};

struct TokenizerSpec {  // mirrors GGUF tokenizer.ggml.* keys
  enum class Kind {
    kByteLevelBpe /*"gpt2"*/,
    kSentencePieceBpe /*"llama"*/
  } kind = Kind::kByteLevelBpe;
  std::string pre;  // tokenizer.ggml.pre: "smollm", "llama-bpe", "qwen2", "gpt2", "default", ...
  std::vector<std::string> tokens;
  std::vector<float> scores;         // may be empty (SPM merges by score when merges are empty)
  std::vector<int32_t> token_types;  // TokenType per token; may be empty (all normal)
  std::vector<std::string> merges;   // "A B", rank = index
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = true;
  std::string chat_template;

  // Refinements (from_hf_json fills them; GGUF callers may leave the defaults).
  std::vector<AddedToken> added_tokens;
  // Pre-tokenizer regexes applied in sequence ("isolated" splits); overrides `pre` when non-empty.
  // For SPM they run on the text after ' ' -> U+2581 escaping.
  std::vector<std::string> pre_regexes;
  bool byte_level_add_prefix_space = false;  // HF ByteLevel(add_prefix_space=true)
  bool ignore_merges = false;                // a whole word found in the vocab is one token
  bool byte_fallback = true;                 // SPM: unknown characters become <0xNN> tokens
  // SPM: prefix every text fragment (also those after special tokens, like llama.cpp and HF's
  // Prepend normalizer) rather than only the start of the input (HF Metaspace "first").
  bool space_prefix_every_fragment = true;
};

class Tokenizer {
 public:
  struct Impl;

  static Tokenizer from_spec(TokenizerSpec spec);
  // tokenizer_config.json is optional: it supplies bos/eos tokens, add_bos_token/add_eos_token and
  // chat_template.
  static Tokenizer from_hf_json(const std::string& tokenizer_json_path,
                                const std::string& tokenizer_config_json_path = "");

  // Byte range [first, second) of a text.
  using Span = std::pair<size_t, size_t>;
  struct EncodeOptions {
    bool add_special = true;    // BOS/EOS per config
    bool parse_special = true;  // special tokens in text become their ids
    // Sorted, disjoint ranges of untrusted text (a user's message inside a rendered chat
    // prompt): a special token overlapping one stays text there, whatever parse_special says.
    std::span<const Span> literal = {};
  };
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opt) const;
  std::vector<int32_t> encode(std::string_view text) const { return encode(text, EncodeOptions{}); }
  // Where the text of special tokens (<|im_end|>, <s>, ...) occurs in `text`, leftmost-longest.
  std::vector<Span> special_token_spans(std::string_view text) const;
  // Invalid UTF-8 in the result is replaced by U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::string token_bytes(int32_t id) const;  // decoded bytes of one token (may be partial UTF-8)
  const std::string& token_text(int32_t id) const;  // the vocabulary string as stored
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  std::string bos_token() const;  // texts, "" if none
  std::string eos_token() const;
  bool is_special(int32_t id) const;  // control or unknown tokens (skipped by skip_special)
  // eos + end-of-generation tokens found by text: <|im_end|>, <|endoftext|>, <|eot_id|>, ...
  const std::vector<int32_t>& stop_ids() const;
  std::optional<int32_t> token_id(std::string_view token_text) const;
  const std::string& chat_template() const;
  bool adds_space_prefix() const;  // SPM decode strips one leading space (like HF's Strip decoder)

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace tessera::tokenizer
