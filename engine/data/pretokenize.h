// GPT-2's pre-tokenisation, written out by hand over UTF-8 (std::regex has no
// \p{L}): the text is cut into the pieces the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// matches, and BPE merges never cross a piece boundary.
//
// Character classes: ASCII exactly as the pattern; outside ASCII, Unicode
// White_Space (what the Rust `regex` crate of Hugging Face tokenizers uses for
// \s) and the numbers and punctuation of Latin-1, General Punctuation and CJK
// Symbols are classified as such, and every other code point counts as a
// letter. That is the documented approximation: scripts whose digits or
// punctuation live elsewhere (Devanagari digits, Arabic commas, ...) split
// differently from the tokenizers library, which changes which merges apply
// to them, never whether text round-trips. A byte that is not valid UTF-8 is
// a one-byte piece of its own "other" class, so any byte string splits.
#pragma once

#include <string_view>
#include <vector>

namespace bl {

enum class CharClass { kLetter, kNumber, kSpace, kOther };

/// Class of a Unicode scalar value under the approximation above.
CharClass char_class(char32_t cp);

/// The pieces of text in order; they concatenate to text exactly.
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

}  // namespace bl
