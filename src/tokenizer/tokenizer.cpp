// Tokenizer construction from a TokenizerSpec, encode/decode and the vocabulary accessors.
#include "tessera/tokenizer/tokenizer.h"

#include <algorithm>

#include "tessera/core/error.h"
#include "tessera/tokenizer/unicode.h"
#include "tokenizer_impl.h"

namespace tessera::tokenizer {
namespace {

// Texts of end-of-generation tokens used by common chat models (llama.cpp matches the same).
constexpr const char* kStopTexts[] = {
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<|end_of_text|>",
    "<EOT>",
    "<|end▁of▁sentence|>",
    "<｜end▁of▁sentence｜>",
};

int32_t type_of(const TokenizerSpec& spec, size_t id) {
  return id < spec.token_types.size() ? spec.token_types[id] : kTokenNormal;
}

// Bytes a token stands for in decoded text.
std::string piece_of(const TokenizerSpec& spec, size_t id) {
  const std::string& text = spec.tokens[id];
  const int32_t type = type_of(spec, id);
  if (type == kTokenControl || type == kTokenUserDefined || type == kTokenUnknown) return text;
  if (spec.kind == TokenizerSpec::Kind::kSentencePieceBpe) {
    if (text.size() == 6 && text.starts_with("<0x") && text[5] == '>' &&
        (type == kTokenByte || spec.byte_fallback)) {
      const auto hex = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
      return std::string(1, char(hex(text[3]) * 16 + hex(text[4])));
    }
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out.push_back(' ');
        i += 2;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  }
  // Byte-level: every character must be in the byte map, else the text is taken as is (HF).
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    const int n = utf8_sequence(text, pos);
    if (n <= 0) return text;
    auto b = codepoint_to_byte(utf8_decode_at(text, pos, n));
    if (!b) return text;
    out.push_back(char(*b));
    pos += size_t(n);
  }
  return out;
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> build_impl(TokenizerSpec spec) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  const size_t n = spec.tokens.size();
  if (n == 0) fail(ErrorCode::kInvalidArgument, "tokenizer: empty vocabulary");
  if (!spec.token_types.empty() && spec.token_types.size() != n) {
    fail(ErrorCode::kInvalidArgument, "tokenizer: ", spec.token_types.size(), " token types for ",
         n, " tokens");
  }
  if (!spec.scores.empty() && spec.scores.size() != n) {
    fail(ErrorCode::kInvalidArgument, "tokenizer: ", spec.scores.size(), " scores for ", n,
         " tokens");
  }
  for (int32_t* id : {&spec.bos_id, &spec.eos_id, &spec.unk_id, &spec.pad_id}) {
    if (*id >= int32_t(n)) fail(ErrorCode::kOutOfRange, "tokenizer: special id ", *id, " >= ", n);
  }
  impl->token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) impl->token_to_id.emplace(spec.tokens[i], int32_t(i));

  const bool spm = spec.kind == TokenizerSpec::Kind::kSentencePieceBpe;
  impl->byte_token.fill(-1);
  impl->have_all_byte_tokens = true;
  for (int b = 0; b < 256; ++b) {
    std::string key;
    if (spm) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      key = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    } else {
      append_utf8(key, byte_to_codepoint(uint8_t(b)));
    }
    auto it = impl->token_to_id.find(key);
    if (it != impl->token_to_id.end()) {
      impl->byte_token[b] = it->second;
    } else {
      impl->have_all_byte_tokens = false;
    }
  }

  impl->merges.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& m = spec.merges[rank];
    // Split at the first space after the first byte, so a token starting with ' ' still parses.
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos)
      fail(ErrorCode::kInvalidArgument, "tokenizer: bad merge '", m, "'");
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    auto ia = impl->token_to_id.find(a), ib = impl->token_to_id.find(b),
         im = impl->token_to_id.find(a + b);
    if (ia == impl->token_to_id.end() || ib == impl->token_to_id.end() ||
        im == impl->token_to_id.end()) {
      continue;  // a merge whose parts or result are not tokens can never apply
    }
    const uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    impl->merges.emplace(key, std::make_pair(int32_t(rank), im->second));  // first rank wins
  }

  const std::vector<std::string> regexes = !spec.pre_regexes.empty() ? spec.pre_regexes
                                           : spm                     ? std::vector<std::string>{}
                                                                     : regexes_for_pre(spec.pre);
  for (const auto& r : regexes) impl->pre.push_back(std::make_unique<RegexSplitter>(r));

  impl->special.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = type_of(spec, i);
    if (t == kTokenControl || t == kTokenUnknown) impl->special[i] = 1;
  }
  for (const AddedToken& t : spec.added_tokens) {
    if (t.id < 0 || t.id >= int32_t(n)) {
      fail(ErrorCode::kOutOfRange, "tokenizer: added token id ", t.id, " out of range");
    }
    if (t.special) impl->special[t.id] = 1;
    impl->specials.add(t);
  }
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = type_of(spec, i);
    if (t == kTokenControl || t == kTokenUnknown || t == kTokenUserDefined) {
      impl->specials.add({int32_t(i), spec.tokens[i], t != kTokenUserDefined, false, false});
    }
  }
  impl->specials.finish();

  impl->piece_bytes.resize(n);
  for (size_t i = 0; i < n; ++i) impl->piece_bytes[i] = piece_of(spec, i);

  if (spec.eos_id >= 0) impl->stop_ids.push_back(spec.eos_id);
  for (const char* text : kStopTexts) {
    auto it = impl->token_to_id.find(text);
    if (it != impl->token_to_id.end() && std::find(impl->stop_ids.begin(), impl->stop_ids.end(),
                                                   it->second) == impl->stop_ids.end()) {
      impl->stop_ids.push_back(it->second);
    }
  }
  impl->spec = std::move(spec);
  return impl;
}

Tokenizer Tokenizer::from_spec(TokenizerSpec spec) {
  return Tokenizer(build_impl(std::move(spec)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
  const TokenizerSpec& spec = impl_->spec;
  std::vector<int32_t> out;
  if (opt.add_special && spec.add_bos && spec.bos_id >= 0) out.push_back(spec.bos_id);
  for (const Fragment& f : impl_->specials.split(text, opt.parse_special, opt.literal)) {
    if (f.id >= 0) {
      out.push_back(f.id);
    } else {
      impl_->encode_text(text.substr(f.off, f.len), f.off == 0, out);
    }
  }
  if (opt.add_special && spec.add_eos && spec.eos_id >= 0) out.push_back(spec.eos_id);
  return out;
}

std::vector<Tokenizer::Span> Tokenizer::special_token_spans(std::string_view text) const {
  std::vector<Span> out;
  for (const Fragment& f : impl_->specials.split(text, /*parse_special=*/true)) {
    if (f.id >= 0 && is_special(f.id)) out.emplace_back(f.off, f.off + f.len);
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    raw += token_bytes(id);
  }
  if (adds_space_prefix() && !raw.empty() && raw[0] == ' ') raw.erase(0, 1);
  return utf8_lossy(raw);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail(ErrorCode::kOutOfRange, "tokenizer: token id ", id);
  return impl_->piece_bytes[size_t(id)];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail(ErrorCode::kOutOfRange, "tokenizer: token id ", id);
  return impl_->spec.tokens[size_t(id)];
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->spec.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->spec.eos_id; }
std::string Tokenizer::bos_token() const {
  return bos_id() >= 0 ? impl_->spec.tokens[size_t(bos_id())] : std::string();
}
std::string Tokenizer::eos_token() const {
  return eos_id() >= 0 ? impl_->spec.tokens[size_t(eos_id())] : std::string();
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[size_t(id)] != 0;
}
const std::vector<int32_t>& Tokenizer::stop_ids() const { return impl_->stop_ids; }
std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->token_to_id.find(std::string(token_text));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}
const std::string& Tokenizer::chat_template() const { return impl_->spec.chat_template; }
bool Tokenizer::adds_space_prefix() const {
  return impl_->spec.kind == TokenizerSpec::Kind::kSentencePieceBpe && impl_->spec.add_space_prefix;
}

}  // namespace tessera::tokenizer
