// Tokenizers: text <-> token ids. A run stores its tokenizer as JSON (to_json)
// and rebuilds it with tokenizer_from_json, so ids mean the same thing on resume.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bl {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Text -> ids. Throws std::invalid_argument on text the tokenizer cannot represent.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  /// Ids -> text. Throws std::invalid_argument on an id outside [0, vocab_size()).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  /// Text of one token (for vocabulary displays).
  virtual std::string piece(int32_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  /// "char" or "byte": the key used by make_tokenizer and in to_json()["type"].
  virtual std::string name() const = 0;
  /// Everything needed to rebuild this tokenizer with identical ids.
  virtual nlohmann::json to_json() const = 0;
};

/// Character-level: one id per Unicode code point of the corpus, ids in code-point
/// order. For a corpus this equals Python's `sorted(set(text))` (65 for tinyshakespeare).
/// decode always yields valid UTF-8 (every vocabulary entry is a Unicode scalar value).
class CharTokenizer final : public Tokenizer {
 public:
  /// Vocabulary = sorted unique code points of corpus. Throws on invalid UTF-8 / empty corpus.
  static CharTokenizer from_text(std::string_view corpus);
  /// From an explicit vocabulary (strictly increasing scalar values).
  explicit CharTokenizer(std::vector<char32_t> code_points);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string piece(int32_t id) const override;
  int64_t vocab_size() const override { return int64_t(vocab_.size()); }
  std::string name() const override { return "char"; }
  nlohmann::json to_json() const override;

  const std::vector<char32_t>& code_points() const { return vocab_; }

 private:
  int32_t id_of(char32_t cp) const;  // -1 if absent
  std::vector<char32_t> vocab_;
  std::vector<int32_t> ascii_;  // 128-entry fast lookup, -1 = absent
};

/// Byte-level: ids 0..255 are the raw bytes of the text, so any input encodes.
/// decode returns the bytes as they are: ids that do not form valid UTF-8 (e.g. a
/// truncated multi-byte sequence from sampling) give an invalid UTF-8 string.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string piece(int32_t id) const override;
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "byte"; }
  nlohmann::json to_json() const override;
};

/// Rebuilds a tokenizer saved with to_json(). Throws std::invalid_argument on bad JSON.
std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j);

/// Builds a tokenizer by name ("char", "byte"); corpus defines the char vocabulary.
std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, std::string_view corpus);

/// Names accepted by make_tokenizer.
std::vector<std::string> tokenizer_names();

}  // namespace bl
