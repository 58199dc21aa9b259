#include "tessera/tokenizer/unicode.h"

#include <array>

namespace tessera::tokenizer {
namespace {

constexpr bool is_printable_byte(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<char32_t, 256> make_byte_map() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = is_printable_byte(b) ? char32_t(b) : next++;
  return map;
}
constexpr std::array<char32_t, 256> kByteMap = make_byte_map();

// Inverse over U+0000..U+0143 (the largest mapped code point); -1 where unmapped.
constexpr std::array<int16_t, 0x144> make_inverse() {
  std::array<int16_t, 0x144> inv{};
  for (auto& v : inv) v = -1;
  for (int b = 0; b < 256; ++b) inv[kByteMap[b]] = int16_t(b);
  return inv;
}
constexpr std::array<int16_t, 0x144> kInverse = make_inverse();

bool is_cont(uint8_t c) { return (c & 0xC0) == 0x80; }

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

char32_t byte_to_codepoint(uint8_t byte) { return kByteMap[byte]; }

std::optional<uint8_t> codepoint_to_byte(char32_t cp) {
  if (cp >= kInverse.size() || kInverse[cp] < 0) return std::nullopt;
  return uint8_t(kInverse[cp]);
}

std::string bytes_to_unicode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) append_utf8(out, kByteMap[uint8_t(c)]);
  return out;
}

int utf8_sequence(std::string_view s, size_t pos) {
  const auto at = [&](size_t i) { return uint8_t(s[i]); };
  const uint8_t c = at(pos);
  if (c < 0x80) return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < need; ++k) {
    if (pos + k >= s.size()) return 0;  // truncated: valid so far
    const uint8_t b = at(pos + k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : is_cont(b);
    if (!ok) return -k;
  }
  return need;
}

char32_t utf8_decode_at(std::string_view s, size_t pos, int len) {
  const auto at = [&](size_t i) { return char32_t(uint8_t(s[i])); };
  switch (len) {
    case 1:
      return at(pos);
    case 2:
      return ((at(pos) & 0x1F) << 6) | (at(pos + 1) & 0x3F);
    case 3:
      return ((at(pos) & 0x0F) << 12) | ((at(pos + 1) & 0x3F) << 6) | (at(pos + 2) & 0x3F);
    default:
      return ((at(pos) & 0x07) << 18) | ((at(pos + 1) & 0x3F) << 12) | ((at(pos + 2) & 0x3F) << 6) |
             (at(pos + 3) & 0x3F);
  }
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const int n = utf8_sequence(s, pos);
    if (n > 0) {
      out.append(s.substr(pos, size_t(n)));
      pos += size_t(n);
    } else {
      append_utf8(out, 0xFFFD);
      pos = n == 0 ? s.size() : pos + size_t(-n);
    }
  }
  return out;
}

bool utf8_valid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const int n = utf8_sequence(s, pos);
    if (n <= 0) return false;
    pos += size_t(n);
  }
  return true;
}

}  // namespace tessera::tokenizer
