#include "data/utf8.h"

#include <cstdio>

namespace bl::utf8 {

bool next(std::string_view s, size_t& pos, char32_t& cp) {
  const size_t n = s.size();
  if (pos >= n) return false;
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    cp = b0;
    ++pos;
    return true;
  }
  int len;
  char32_t c;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, c = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, c = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, c = b0 & 0x07, min = 0x10000;
  } else {
    return false;  // continuation byte or 0xF8..0xFF as a lead byte
  }
  if (pos + size_t(len) > n) return false;
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[pos + size_t(k)]);
    if ((b & 0xC0) != 0x80) return false;
    c = (c << 6) | (b & 0x3F);
  }
  if (c < min || !is_scalar(c)) return false;  // overlong, surrogate or > U+10FFFF
  cp = c;
  pos += size_t(len);
  return true;
}

size_t find_invalid(std::string_view s) {
  size_t pos = 0;
  char32_t cp;
  while (pos < s.size()) {
    // Fast path over ASCII runs: the common case for text corpora.
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    if (!next(s, pos, cp)) return pos;
  }
  return std::string_view::npos;
}

void append(std::string& out, char32_t cp) {
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

std::string describe(char32_t cp) {
  std::string shown;
  switch (cp) {
    case '\n':
      shown = "\\n";
      break;
    case '\r':
      shown = "\\r";
      break;
    case '\t':
      shown = "\\t";
      break;
    default:
      if (cp < 0x20 || cp == 0x7F || !is_scalar(cp))
        shown = "?";
      else
        append(shown, cp);
  }
  char hex[16];
  std::snprintf(hex, sizeof(hex), "U+%04X", unsigned(cp));
  return "'" + shown + "' (" + hex + ")";
}

}  // namespace bl::utf8
