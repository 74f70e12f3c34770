// Strict UTF-8 decoding/encoding shared by the tokenizers and the text loader.
// Strict = RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
// above U+10FFFF, so every decoded code point re-encodes to the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bl::utf8 {

/// Decodes the code point starting at s[pos]; on success stores it in cp, advances
/// pos past it and returns true. On malformed input returns false and leaves pos.
bool next(std::string_view s, size_t& pos, char32_t& cp);

/// Byte offset of the first malformed sequence, or std::string_view::npos if s is valid.
size_t find_invalid(std::string_view s);

/// Appends the UTF-8 encoding of a valid Unicode scalar value.
void append(std::string& out, char32_t cp);

/// True for Unicode scalar values (what UTF-8 may encode).
inline bool is_scalar(char32_t cp) {
  return cp < 0xD800 || (cp > 0xDFFF && cp <= 0x10FFFF);
}

/// Human-readable name for error messages: "'a' (U+0061)", "'\n' (U+000A)".
std::string describe(char32_t cp);

}  // namespace bl::utf8
