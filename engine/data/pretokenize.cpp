#include "data/pretokenize.h"

#include "data/utf8.h"

namespace bl {

namespace {

bool in(char32_t c, char32_t lo, char32_t hi) {
  return c >= lo && c <= hi;
}

// One code point (or one invalid byte) of the text, with its class.
struct Cp {
  CharClass cls;
  size_t len;  // bytes
  char32_t cp;
};

Cp at(std::string_view s, size_t pos) {
  const auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) return {char_class(b), 1, b};
  size_t p = pos;
  char32_t cp;
  if (!utf8::next(s, p, cp)) return {CharClass::kOther, 1, 0xFFFD};
  return {char_class(cp), p - pos, cp};
}

}  // namespace

CharClass char_class(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::kLetter;
    if (c >= '0' && c <= '9') return CharClass::kNumber;
    if (c == ' ' || in(c, 0x09, 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  // Unicode White_Space outside ASCII.
  if (c == 0x85 || c == 0xA0 || c == 0x1680 || in(c, 0x2000, 0x200A) || c == 0x2028 ||
      c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000)
    return CharClass::kSpace;
  if (c < 0x100) {
    // Latin-1: superscripts and vulgar fractions are numbers (\p{No}); ª µ º
    // are letters; the rest of U+00A1..U+00BF and × ÷ are symbols/punctuation.
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || in(c, 0xBC, 0xBE)) return CharClass::kNumber;
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return CharClass::kLetter;
    if (in(c, 0x80, 0xBF) || c == 0xD7 || c == 0xF7) return CharClass::kOther;
    return CharClass::kLetter;
  }
  if (in(c, 0x2010, 0x2027) || in(c, 0x2030, 0x205E)) return CharClass::kOther;  // punctuation
  if (in(c, 0x2070, 0x2079) || in(c, 0x2080, 0x2089) || in(c, 0x2150, 0x2189) ||
      in(c, 0x2460, 0x249B) || in(c, 0xFF10, 0xFF19))
    return CharClass::kNumber;  // super/subscripts, number forms, circled, fullwidth digits
  if (in(c, 0x20A0, 0x20CF) || in(c, 0x2190, 0x245F) || in(c, 0x2500, 0x2BFF) ||
      in(c, 0x3001, 0x3004) || in(c, 0x3008, 0x3020) || in(c, 0xFE30, 0xFE4F) ||
      in(c, 0xFF01, 0xFF0F) || in(c, 0xFF1A, 0xFF20) || in(c, 0x1F000, 0x1FAFF))
    return CharClass::kOther;  // currency, arrows, math, boxes, CJK/fullwidth punctuation, emoji
  if (in(c, 0x300, 0x36F)) return CharClass::kOther;  // combining marks are \p{M}, not letters
  return CharClass::kLetter;
}

std::vector<std::string_view> gpt2_pretokenize(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size() / 4 + 1);
  const size_t n = s.size();
  size_t i = 0;
  // End of the run of code points of class cls starting at p.
  auto run_end = [&](size_t p, CharClass cls) {
    while (p < n) {
      const Cp c = at(s, p);
      if (c.cls != cls) break;
      p += c.len;
    }
    return p;
  };
  while (i < n) {
    // Contractions: 's 't 're 've 'm 'll 'd (case-sensitive, as GPT-2).
    if (s[i] == '\'' && i + 1 < n) {
      const char a = s[i + 1];
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        len = 2;
      } else if (i + 2 < n && ((a == 'r' && s[i + 2] == 'e') || (a == 'v' && s[i + 2] == 'e') ||
                               (a == 'l' && s[i + 2] == 'l'))) {
        len = 3;
      }
      if (len) {
        out.push_back(s.substr(i, len));
        i += len;
        continue;
      }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional ASCII space,
    // then a run of one non-space class.
    const size_t start = i;
    size_t p = i;
    if (s[p] == ' ' && p + 1 < n) {
      const Cp c = at(s, p + 1);
      if (c.cls != CharClass::kSpace) p += 1;
    }
    const Cp c = at(s, p);
    if (c.cls != CharClass::kSpace) {
      // Greedy like the regex: an "other" run swallows an apostrophe (`!'s` is
      // "!'" then "s"); contractions are only tried where a piece starts.
      const size_t e = run_end(p, c.cls);
      out.push_back(s.substr(start, e - start));
      i = e;
      continue;
    }
    // Whitespace: `\s+(?!\S)` keeps the last space for the next piece when a
    // non-space follows a run of two or more; else `\s+` takes the run.
    const size_t e = run_end(i, CharClass::kSpace);
    if (e < n) {
      // Last code point of the run: step back over its bytes.
      size_t last = i;
      for (size_t q = i; q < e;) {
        last = q;
        q += at(s, q).len;
      }
      if (last > i) {
        out.push_back(s.substr(i, last - i));
        i = last;
        continue;
      }
    }
    out.push_back(s.substr(i, e - i));
    i = e;
  }
  return out;
}

}  // namespace bl
