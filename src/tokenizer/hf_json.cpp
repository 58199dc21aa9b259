// Tokenizer::from_hf_json: maps a Hugging Face tokenizer.json (+ optional tokenizer_config.json)
// onto a TokenizerSpec. Supported: model BPE with a byte-level pre-tokenizer (ByteLevel, or a
// Sequence of Split/Digits/ByteLevel), or SentencePiece style (normalizer Prepend+Replace or a
// Metaspace pre-tokenizer, byte_fallback).
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/json/bounded_json.h"
#include "tokenizer_impl.h"

namespace tessera::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kHfByteLevelRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁"

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, "tokenizer: cannot open ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return tessera::json::parse(ss.str(), tessera::json::kModelFileLimits, path);
  } catch (const Error& e) {
    fail(ErrorCode::kCorruptFile, "tokenizer: ", e.what());
  }
}

// A token id as the file states it: a non-negative integer that fits int32 (a negative id would
// index before the token table; 3e103 would be cast to int; both found by
// tests/fuzz/fuzz_hf_tokenizer).
int32_t json_token_id(const json& j, const std::string& path) {
  const std::optional<int32_t> id = tessera::json::integer_as<int32_t>(j);
  if (!id || *id < 0)
    fail(ErrorCode::kCorruptFile, path, ": token id ", j.dump(), " is not an integer in [0, 2^31)");
  return *id;
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string();
}

// Flattens a (possibly nested) Sequence into its steps.
void flatten(const json& j, const char* list_key, std::vector<json>& out) {
  if (j.is_null()) return;
  if (type_of(j) == "Sequence") {
    for (const json& s : j.at(list_key)) flatten(s, list_key, out);
  } else {
    out.push_back(j);
  }
}

// A literal string as a PCRE2 pattern.
std::string quote_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string token_text_of(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
  return {};
}

void configure_byte_level(const std::vector<json>& steps, TokenizerSpec& spec) {
  for (const json& s : steps) {
    const std::string t = type_of(s);
    if (t == "ByteLevel") {
      spec.byte_level_add_prefix_space = s.value("add_prefix_space", false);
      if (s.value("use_regex", true)) spec.pre_regexes.push_back(kHfByteLevelRegex);
    } else if (t == "Digits") {
      spec.pre_regexes.push_back(s.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
    } else if (t == "Split") {
      if (s.value("behavior", std::string()) != "Isolated" || s.value("invert", false)) {
        fail(ErrorCode::kUnsupported, "tokenizer: Split pre-tokenizer other than Isolated");
      }
      const json& p = s.at("pattern");
      spec.pre_regexes.push_back(p.contains("Regex")
                                     ? p["Regex"].get<std::string>()
                                     : quote_regex(p.at("String").get<std::string>()));
    } else {
      fail(ErrorCode::kUnsupported, "tokenizer: unsupported pre-tokenizer ", t);
    }
  }
}

void configure_spm(const json& root, const std::vector<json>& pre_steps, TokenizerSpec& spec) {
  std::vector<json> norm;
  flatten(root.value("normalizer", json()), "normalizers", norm);
  spec.add_space_prefix = false;
  for (const json& n : norm) {
    const std::string t = type_of(n);
    if (t == "Prepend") {
      spec.add_space_prefix = n.value("prepend", std::string()) == kSpaceMark;
      spec.space_prefix_every_fragment = true;
    } else if (t != "Replace" && t != "NFC" && t != "NFKC") {
      fail(ErrorCode::kUnsupported, "tokenizer: unsupported normalizer ", t);
    }
  }
  for (const json& s : pre_steps) {
    if (type_of(s) != "Metaspace") {
      fail(ErrorCode::kUnsupported, "tokenizer: unsupported SentencePiece pre-tokenizer ",
           type_of(s));
    }
    const std::string scheme = s.value("prepend_scheme", std::string());
    spec.add_space_prefix = scheme.empty() ? s.value("add_prefix_space", true) : scheme != "never";
    spec.space_prefix_every_fragment = scheme == "always";
    // split=true cuts before every U+2581, each word starting with its space mark.
    if (s.value("split", true)) spec.pre_regexes.push_back("\\x{2581}[^\\x{2581}]*|[^\\x{2581}]+");
  }
}

// post_processor TemplateProcessing: BOS/EOS around the single-sequence template.
void configure_template(const json& root, TokenizerSpec& spec,
                        const std::unordered_map<std::string, int32_t>& ids) {
  std::vector<json> steps;
  flatten(root.value("post_processor", json()), "processors", steps);
  for (const json& p : steps) {
    if (type_of(p) != "TemplateProcessing") continue;
    bool seen_seq = false;
    for (const json& piece : p.at("single")) {
      if (piece.contains("Sequence")) {
        seen_seq = true;
      } else if (piece.contains("SpecialToken")) {
        auto it = ids.find(piece["SpecialToken"].at("id").get<std::string>());
        if (it == ids.end()) continue;
        if (seen_seq) {
          spec.add_eos = true;
          spec.eos_id = it->second;
        } else {
          spec.add_bos = true;
          spec.bos_id = it->second;
        }
      }
    }
  }
}

}  // namespace

// A function-try-block: a document of the wrong shape (a missing "model", a string where an
// object belongs) throws nlohmann's exceptions from .at()/.get(); they leave as a typed error
// naming the file, never as a foreign exception (found by tests/fuzz/fuzz_hf_tokenizer).
Tokenizer Tokenizer::from_hf_json(const std::string& tokenizer_json_path,
                                  const std::string& tokenizer_config_json_path) try {
  const json root = read_json(tokenizer_json_path);
  const json& model = root.at("model");
  if (model.value("type", std::string("BPE")) != "BPE") {
    fail(ErrorCode::kUnsupported, "tokenizer: model type ", model.value("type", ""));
  }
  TokenizerSpec spec;
  std::unordered_map<std::string, int32_t> ids;
  int32_t max_id = -1;
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) {
    fail(ErrorCode::kCorruptFile, tokenizer_json_path, ": model.vocab is not an object");
  }
  for (const auto& [text, id] : vocab.items()) {
    ids[text] = json_token_id(id, tokenizer_json_path);
    max_id = std::max(max_id, ids[text]);
  }
  const json added = root.value("added_tokens", json::array());
  for (const json& a : added) {
    const int32_t id = json_token_id(a.at("id"), tokenizer_json_path);
    ids[a.at("content").get<std::string>()] = id;
    max_id = std::max(max_id, id);
  }
  // Ids index the token table: one far past the number of tokens (a table of holes) is a
  // corrupt file rather than a reason to allocate gigabytes (found by fuzz_hf_tokenizer).
  if (size_t(max_id) + 1 > 2 * ids.size() + 1024) {
    fail(ErrorCode::kCorruptFile, tokenizer_json_path, ": token id ", max_id,
         " is far past the ", ids.size(), " tokens the file defines");
  }
  spec.tokens.assign(size_t(max_id + 1), std::string());
  spec.token_types.assign(size_t(max_id + 1), kTokenNormal);
  for (const auto& [text, id] : ids) spec.tokens[size_t(id)] = text;
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.tokens[i].empty()) {
      spec.tokens[i] = "[UNUSED_" + std::to_string(i) + "]";  // holes never match text
      spec.token_types[i] = kTokenUnused;
    }
  }
  for (const json& m : model.value("merges", json::array())) {
    spec.merges.push_back(m.is_string()
                              ? m.get<std::string>()
                              : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  }
  spec.ignore_merges = model.value("ignore_merges", false);
  spec.byte_fallback = model.value("byte_fallback", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = ids.find(model["unk_token"].get<std::string>());
    if (it != ids.end()) spec.unk_id = it->second;
  }

  std::vector<json> pre_steps;
  flatten(root.value("pre_tokenizer", json()), "pretokenizers", pre_steps);
  bool byte_level = type_of(root.value("decoder", json())) == "ByteLevel";
  for (const json& s : pre_steps) byte_level = byte_level || type_of(s) == "ByteLevel";
  if (byte_level) {
    spec.kind = TokenizerSpec::Kind::kByteLevelBpe;
    configure_byte_level(pre_steps, spec);
    if (spec.pre_regexes.empty()) spec.pre_regexes.push_back("(?!)");  // no split at all
  } else {
    spec.kind = TokenizerSpec::Kind::kSentencePieceBpe;
    configure_spm(root, pre_steps, spec);
    if (spec.byte_fallback) {
      for (size_t i = 0; i < spec.tokens.size(); ++i) {
        const std::string& t = spec.tokens[i];
        if (t.size() == 6 && t.starts_with("<0x") && t[5] == '>') spec.token_types[i] = kTokenByte;
      }
    }
  }
  if (spec.unk_id >= 0) spec.token_types[size_t(spec.unk_id)] = kTokenUnknown;
  for (const json& a : added) {
    AddedToken t;
    t.id = json_token_id(a.at("id"), tokenizer_json_path);
    t.content = a.at("content").get<std::string>();
    t.special = a.value("special", false);
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    spec.token_types[size_t(t.id)] = t.special ? kTokenControl : kTokenUserDefined;
    spec.added_tokens.push_back(std::move(t));
  }
  configure_template(root, spec, ids);

  if (!tokenizer_config_json_path.empty()) {
    const json cfg = read_json(tokenizer_config_json_path);
    const auto id_of = [&](const char* key, int32_t& out) {
      if (!cfg.contains(key)) return;
      auto it = ids.find(token_text_of(cfg[key]));
      if (it != ids.end()) out = it->second;
    };
    id_of("bos_token", spec.bos_id);
    id_of("eos_token", spec.eos_id);
    id_of("unk_token", spec.unk_id);
    id_of("pad_token", spec.pad_id);
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      spec.add_bos = cfg["add_bos_token"].get<bool>();
    }
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
      spec.add_eos = cfg["add_eos_token"].get<bool>();
    }
    const json tmpl = cfg.value("chat_template", json());
    if (tmpl.is_string()) {
      spec.chat_template = tmpl.get<std::string>();
    } else if (tmpl.is_array()) {  // named templates: take "default", else the first
      for (const json& t : tmpl) {
        if (spec.chat_template.empty() || t.value("name", std::string()) == "default") {
          spec.chat_template = t.value("template", std::string());
        }
      }
    }
  }
  return from_spec(std::move(spec));
} catch (const json::exception& e) {
  fail(ErrorCode::kCorruptFile, "tokenizer: ", tokenizer_json_path,
       ": not a tokenizer.json of the expected shape: ", e.what());
}

}  // namespace tessera::tokenizer
