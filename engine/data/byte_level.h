// GPT-2's byte <-> Unicode mapping ("bytes_to_unicode"): every byte becomes a
// printable code point (printable Latin-1 bytes map to themselves, the others
// to U+0100 and up, e.g. the space to 'Ġ' U+0120), so byte-level BPE tokens
// can be stored as plain strings in tokenizer.json.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace bl::byte_level {

/// The code point byte b is written as.
char32_t to_unicode(unsigned char b);
/// The byte a code point stands for; nullopt if it is not in the mapping.
std::optional<unsigned char> to_byte(char32_t cp);

/// Raw bytes -> the mapped UTF-8 string (as in tokenizer.json).
std::string encode(std::string_view bytes);
/// Mapped UTF-8 string -> raw bytes; nullopt if it is not valid UTF-8 or has
/// a code point outside the mapping.
std::optional<std::string> decode(std::string_view mapped);

}  // namespace bl::byte_level
