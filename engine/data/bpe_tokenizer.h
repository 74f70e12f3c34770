// Byte-level BPE (GPT-2 style): text is cut by GPT-2's pre-tokenisation
// (data/pretokenize.h), each piece starts as its bytes and merges apply in
// rank order. Read and written as a Hugging Face `tokenizer.json` (model
// "BPE", pre-tokenizer and decoder "ByteLevel"), so files trained here load in
// the `tokenizers` library and GPT-2-style files made by others load here.
// SentencePiece-style BPE (LLaMA 1/2: Metaspace, byte_fallback) is refused
// naming the field.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/tokenizer.h"

namespace bl {

/// A tokenizer.json that cannot be used: what() names the file and the field.
struct TokenizerFileError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class BpeTokenizer final : public Tokenizer {
 public:
  /// A token matched literally in the text before pre-tokenisation
  /// (`<|endoftext|>`); its content is raw text, not byte-level mapped.
  struct AddedToken {
    int32_t id = 0;
    std::string content;
    bool special = true;
  };
  using Merge = std::pair<int32_t, int32_t>;

  /// tokens[id] = the token's raw bytes; every single byte must be a token.
  /// merges in rank order; the result of each is the token of the two
  /// concatenated. Throws std::invalid_argument naming what is wrong.
  BpeTokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
               std::vector<AddedToken> added = {});

  /// From a parsed Hugging Face tokenizer.json; errors name `what` and the field.
  static BpeTokenizer from_hf_json(const nlohmann::json& j, const std::string& what);
  /// From to_json() (a run record or checkpoint): the embedded document.
  static BpeTokenizer from_record(const nlohmann::json& j);
  /// Reads DIR/tokenizer.json (or the file itself); records its path and SHA-256.
  static BpeTokenizer load(const std::string& path);
  /// The Hugging Face tokenizer.json document (vocab in id order).
  std::string to_hf_json_text(int indent = -1) const;
  /// Writes DIR/tokenizer.json (creating DIR); returns the file's path.
  std::string save(const std::string& dir) const;

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string piece(int32_t id) const override;
  int64_t vocab_size() const override { return int64_t(tokens_.size()); }
  std::string name() const override { return "bpe"; }
  /// {"type":"bpe", "vocab_size", "source" (file), "sha256" (of the file),
  ///  "tokenizer_json": the whole HF document}: a run rebuilds the tokenizer
  /// from its record alone, even after the directory is gone.
  nlohmann::json to_json() const override;

  const std::vector<Merge>& merges() const { return merges_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  /// Where it was loaded from ("" if built in memory) and that file's SHA-256.
  const std::string& source() const { return source_; }
  const std::string& source_sha256() const { return source_sha256_; }

 private:
  /// Appends the ids of one pre-tokenised piece.
  void encode_word(std::string_view w, std::vector<int32_t>& out) const;
  /// Pre-tokenises text without added tokens and encodes its pieces.
  void encode_plain(std::string_view text, std::vector<int32_t>& out,
                    std::unordered_map<std::string_view, std::vector<int32_t>>& cache) const;

  std::vector<std::string> tokens_;
  std::vector<Merge> merges_;
  std::vector<AddedToken> added_;
  std::array<int32_t, 256> byte_id_{};
  bool ignore_merges_ = false;  // HF "ignore_merges": a piece that is a token stays whole
  // (left << 32 | right) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> ranks_;
  std::string source_, source_sha256_;
};

}  // namespace bl
