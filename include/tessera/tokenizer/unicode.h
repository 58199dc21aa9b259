// UTF-8 and GPT-2 byte<->unicode helpers shared by the tokenizer and the detokenizer. Pure
// functions over tables built at compile time; no state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::tokenizer {

// Appends the UTF-8 encoding of code point cp.
void append_utf8(std::string& out, char32_t cp);

// GPT-2 byte -> code point map (formats.md §5): printable bytes map to themselves, the other 68
// bytes to U+0100 + rank.
char32_t byte_to_codepoint(uint8_t byte);
// Inverse of byte_to_codepoint; nullopt for code points outside the map.
std::optional<uint8_t> codepoint_to_byte(char32_t cp);
// Maps every byte of raw text to the UTF-8 of its GPT-2 code point.
std::string bytes_to_unicode(std::string_view raw);

// Length of the UTF-8 sequence starting at s[pos]: the number of bytes of a complete, valid
// character; 0 if the bytes there can still become valid with more input (truncated at the end);
// -n if the n bytes there are invalid (a maximal invalid subpart, n >= 1).
int utf8_sequence(std::string_view s, size_t pos);
// Decodes the valid character of `len` bytes at s[pos].
char32_t utf8_decode_at(std::string_view s, size_t pos, int len);
// Replaces every maximal invalid subpart (and a truncated tail) with U+FFFD, like Rust's
// String::from_utf8_lossy.
std::string utf8_lossy(std::string_view s);
bool utf8_valid(std::string_view s);

}  // namespace tessera::tokenizer
