// A tokenized corpus on disk (`blocklab-cli data prepare`), for corpora larger
// than memory: training maps it instead of reading and encoding text. Layout:
// the magic "BLTOKEN1", the header's byte count (u64 little-endian), a JSON
// header {"tokenizer", "n_tokens", "source", "source_size", "source_sha256"},
// zero padding to a multiple of 64 bytes, then n_tokens int32 little-endian ids.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

namespace bl {

class Tokenizer;

struct TokenFileHeader {
  nlohmann::json tokenizer;  // Tokenizer::to_json() of the encoder
  int64_t n_tokens = 0;
  std::string source;         // the text file it was prepared from
  int64_t source_size = 0;    // bytes
  std::string source_sha256;  // of the text
  int64_t data_offset = 0;    // where the ids start
};

/// Whether `path` is a regular file starting with the token-file magic (reads
/// 8 bytes; false for anything else, never blocks on a FIFO).
bool is_token_file(const std::string& path);
/// The header, checked against the file: std::runtime_error naming the path
/// and what is wrong (magic, header size or JSON, a missing field, a file size
/// that does not match n_tokens).
TokenFileHeader read_token_file_header(const std::string& path);

/// A read-only memory map of a token file's ids (unmapped on destruction).
class MappedTokens {
 public:
  /// Maps `path` (read_token_file_header's checks), then checks every id is
  /// in [0, vocab_size): std::runtime_error naming the first that is not.
  MappedTokens(const std::string& path, int64_t vocab_size);
  ~MappedTokens();
  MappedTokens(const MappedTokens&) = delete;
  MappedTokens& operator=(const MappedTokens&) = delete;
  const TokenFileHeader& header() const { return header_; }
  std::span<const int32_t> tokens() const { return tokens_; }

 private:
  TokenFileHeader header_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::span<const int32_t> tokens_;
};

/// Encodes the UTF-8 text file `text_path` with `tok` into the token file
/// `out_path`, streaming: the text is read and encoded in pieces of about
/// chunk_bytes, each cut after a newline followed by a non-space character
/// (a boundary no tokenizer's pre-tokenisation crosses), so the ids equal
/// those of encoding the whole text. Written to a temporary name and renamed:
/// a failure leaves no partial file. progress(bytes_done, bytes_total) is
/// called after each piece. Throws std::runtime_error naming the file
/// (missing, invalid UTF-8 with its byte offset, text the tokenizer cannot
/// encode, a write error).
TokenFileHeader prepare_token_file(const std::string& text_path, const Tokenizer& tok,
                                   const std::string& out_path, size_t chunk_bytes = 16 << 20,
                                   const std::function<void(int64_t, int64_t)>& progress = {});

/// The character vocabulary of a text file, streamed (the tokenizer
/// `char` builds from a corpus, without holding the corpus in memory).
std::unique_ptr<Tokenizer> char_tokenizer_of_file(const std::string& text_path);

}  // namespace bl
