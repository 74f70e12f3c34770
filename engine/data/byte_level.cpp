#include "data/byte_level.h"

#include <array>

#include "data/utf8.h"

namespace bl::byte_level {

namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> to_b{};  // every mapped code point is < U+0144
  Tables() {
    to_b.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      // GPT-2 keeps '!'..'~', '¡'..'¬' and '®'..'ÿ'; the rest go to 256 + k in byte order.
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[size_t(b)] = keep ? char32_t(b) : char32_t(256 + extra++);
      to_b[to_cp[size_t(b)]] = int16_t(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t to_unicode(unsigned char b) {
  return tables().to_cp[b];
}

std::optional<unsigned char> to_byte(char32_t cp) {
  if (cp >= tables().to_b.size() || tables().to_b[cp] < 0) return std::nullopt;
  return static_cast<unsigned char>(tables().to_b[cp]);
}

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8::append(out, to_unicode(static_cast<unsigned char>(c)));
  return out;
}

std::optional<std::string> decode(std::string_view mapped) {
  std::string out;
  out.reserve(mapped.size());
  size_t pos = 0;
  char32_t cp;
  while (pos < mapped.size()) {
    if (!utf8::next(mapped, pos, cp)) return std::nullopt;
    const auto b = to_byte(cp);
    if (!b) return std::nullopt;
    out.push_back(char(*b));
  }
  return out;
}

}  // namespace bl::byte_level
