#include "data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <vector>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "io/sha256.h"

namespace bl {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'B', 'L', 'T', 'O', 'K', 'E', 'N', '1'};
constexpr uint64_t kMaxHeader = 1 << 26;  // 64 MiB: a BPE vocabulary fits many times over
constexpr int64_t kAlign = 64;

std::runtime_error bad(const std::string& path, const std::string& what) {
  return std::runtime_error("[token file] " + path + ": " + what);
}

bool regular_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(fs::status(path, ec)) && !ec;
}

/// Reads a text file in pieces cut at a safe boundary, validating UTF-8.
class TextPieces {
 public:
  TextPieces(const std::string& path, size_t chunk) : path_(path), chunk_(chunk) {
    // check_text_file's rules without its 4 GiB cap: this streams.
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw std::runtime_error("[dataset] text file not found: " + path);
    if (!fs::is_regular_file(st))
      throw std::runtime_error("[dataset] " + path +
                               " is not a regular file (a directory, FIFO or device)");
    in_.open(path, std::ios::binary);
    if (!in_) throw std::runtime_error("[dataset] cannot open " + path);
    total_ = int64_t(fs::file_size(path));
  }
  /// The next piece (empty at the end).
  std::string next() {
    std::string out;
    while (true) {
      const size_t cut = safe_cut();
      if (cut != std::string::npos || eof_) {
        const size_t n = cut == std::string::npos ? buf_.size() : cut;
        out.assign(buf_, 0, n);
        buf_.erase(0, n);
        break;
      }
      read_more();
    }
    const size_t badpos = utf8::find_invalid(out);
    if (badpos != std::string_view::npos)
      throw std::runtime_error("[dataset] " + path_ + " is not valid UTF-8 (byte offset " +
                               std::to_string(done_ + int64_t(badpos)) + ")");
    done_ += int64_t(out.size());
    return out;
  }
  int64_t done() const { return done_; }
  int64_t total() const { return total_; }

 private:
  void read_more() {
    std::string more(chunk_, '\0');
    in_.read(more.data(), std::streamsize(more.size()));
    if (in_.bad()) throw std::runtime_error("[dataset] error while reading " + path_);
    more.resize(size_t(in_.gcount()));
    if (more.empty()) eof_ = true;
    buf_ += more;
  }
  // The last position after a '\n' followed by a non-whitespace byte, once the
  // buffer holds at least a chunk; npos if none (read more).
  size_t safe_cut() const {
    if (buf_.size() < chunk_) return std::string::npos;
    for (size_t i = buf_.size() - 1; i > 0; --i)
      if (buf_[i - 1] == '\n' && !std::strchr(" \t\r\n\v\f", buf_[i])) return i;
    return std::string::npos;
  }
  std::string path_;
  size_t chunk_;
  std::ifstream in_;
  std::string buf_;
  bool eof_ = false;
  int64_t done_ = 0, total_ = 0;
};

void write_all(std::ofstream& out, const void* p, size_t n, const std::string& path) {
  out.write(static_cast<const char*>(p), std::streamsize(n));
  if (!out) throw std::runtime_error("[token file] cannot write " + path);
}

}  // namespace

bool is_token_file(const std::string& path) {
  if (!regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char m[8] = {};
  in.read(m, 8);
  return in.gcount() == 8 && std::memcmp(m, kMagic, 8) == 0;
}

TokenFileHeader read_token_file_header(const std::string& path) {
  if (!regular_file(path)) throw bad(path, "not found, or not a regular file");
  std::ifstream in(path, std::ios::binary);
  char m[8] = {};
  uint64_t n = 0;
  in.read(m, 8);
  if (in.gcount() != 8 || std::memcmp(m, kMagic, 8) != 0)
    throw bad(path,
              "not a token file (no BLTOKEN1 magic; prepare one with blocklab-cli data "
              "prepare)");
  unsigned char nb[8] = {};
  in.read(reinterpret_cast<char*>(nb), 8);
  if (in.gcount() != 8) throw bad(path, "truncated header");
  for (int i = 7; i >= 0; --i) n = (n << 8) | nb[i];
  if (n == 0 || n > kMaxHeader) throw bad(path, "header size " + std::to_string(n) + " is invalid");
  std::string text(size_t(n), '\0');
  in.read(text.data(), std::streamsize(n));
  if (uint64_t(in.gcount()) != n) throw bad(path, "truncated header");
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw bad(path, "header is not a JSON object");
  TokenFileHeader h;
  if (!j.contains("tokenizer") || !j["tokenizer"].is_object())
    throw bad(path, "header has no \"tokenizer\" object");
  h.tokenizer = j["tokenizer"];
  if (!j.contains("n_tokens") || !j["n_tokens"].is_number_integer() ||
      j["n_tokens"].get<int64_t>() < 1)
    throw bad(path, "header \"n_tokens\" is missing or not a positive integer");
  h.n_tokens = j["n_tokens"].get<int64_t>();
  h.source = j.value("source", std::string());
  h.source_size = j.value("source_size", int64_t(0));
  h.source_sha256 = j.value("source_sha256", std::string());
  h.data_offset = (16 + int64_t(n) + kAlign - 1) / kAlign * kAlign;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw bad(path, ec.message());
  if (h.n_tokens > (INT64_MAX - h.data_offset) / 4 ||
      int64_t(size) != h.data_offset + 4 * h.n_tokens)
    throw bad(path, "holds " + std::to_string(size) + " bytes, not the " +
                        std::to_string(h.n_tokens) +
                        " tokens its header promises: truncated or damaged");
  return h;
}

MappedTokens::MappedTokens(const std::string& path, int64_t vocab_size)
    : header_(read_token_file_header(path)) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw bad(path, std::string("cannot open: ") + std::strerror(errno));
  map_bytes_ = size_t(header_.data_offset + 4 * header_.n_tokens);
  void* p = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw bad(path, std::string("cannot map: ") + std::strerror(errno));
  map_ = p;
  tokens_ = {reinterpret_cast<const int32_t*>(static_cast<const char*>(p) + header_.data_offset),
             size_t(header_.n_tokens)};
  ::madvise(p, map_bytes_, MADV_SEQUENTIAL);  // the check below reads it once, in order
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (tokens_[i] < 0 || tokens_[i] >= vocab_size) {
      const int32_t v = tokens_[i];
      ::munmap(map_, map_bytes_);
      map_ = nullptr;
      throw bad(path, "token " + std::to_string(v) + " at index " + std::to_string(i) +
                          " is outside the vocabulary of " + std::to_string(vocab_size));
    }
  ::madvise(p, map_bytes_, MADV_RANDOM);  // training draws random windows
}

MappedTokens::~MappedTokens() {
  if (map_) ::munmap(map_, map_bytes_);
}

TokenFileHeader prepare_token_file(const std::string& text_path, const Tokenizer& tok,
                                   const std::string& out_path, size_t chunk_bytes,
                                   const std::function<void(int64_t, int64_t)>& progress) {
  TextPieces pieces(text_path, std::max<size_t>(chunk_bytes, 1));
  const std::string tmp = out_path + ".partial";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("[token file] cannot create " + tmp);
  // The header's size depends on n_tokens: write the ids after a placeholder
  // region, then the real header in front (both fit: the region is sized for
  // the largest n_tokens / size digits).
  TokenFileHeader h;
  h.tokenizer = tok.to_json();
  h.source = fs::absolute(text_path).lexically_normal().string();
  auto header_json = [&] {
    return nlohmann::json{{"tokenizer", h.tokenizer},
                          {"n_tokens", h.n_tokens},
                          {"source", h.source},
                          {"source_size", h.source_size},
                          {"source_sha256", h.source_sha256}}
        .dump();
  };
  h.n_tokens = INT64_MAX;
  h.source_size = INT64_MAX;
  h.source_sha256 = std::string(64, '0');
  const int64_t room = int64_t(header_json().size());
  h.data_offset = (16 + room + kAlign - 1) / kAlign * kAlign;
  const std::vector<char> zeros(size_t(h.data_offset), '\0');
  write_all(out, zeros.data(), zeros.size(), tmp);
  Sha256 sha;
  h.n_tokens = 0;
  try {
    for (std::string piece = pieces.next(); !piece.empty(); piece = pieces.next()) {
      sha.update(piece);
      std::vector<int32_t> ids;
      try {
        ids = tok.encode(piece);
      } catch (const std::exception& e) {
        throw std::runtime_error("[token file] " + text_path + " cannot be encoded with the " +
                                 tok.name() + " tokenizer (in bytes from " +
                                 std::to_string(pieces.done() - int64_t(piece.size())) +
                                 "): " + e.what());
      }
      static_assert(std::endian::native == std::endian::little, "ids are written little-endian");
      write_all(out, ids.data(), ids.size() * sizeof(int32_t), tmp);
      h.n_tokens += int64_t(ids.size());
      if (progress) progress(pieces.done(), pieces.total());
    }
    if (h.n_tokens == 0) throw std::runtime_error("[dataset] the text encodes to no tokens");
    h.source_size = pieces.done();
    h.source_sha256 = sha.hex_digest();
    // The real header, padded with spaces (valid JSON whitespace) to its room.
    std::string hj = header_json();
    hj.resize(size_t(room), ' ');
    out.seekp(0);
    write_all(out, kMagic, 8, tmp);
    unsigned char nb[8];
    for (int i = 0; i < 8; ++i) nb[i] = uint8_t(uint64_t(room) >> (8 * i));
    write_all(out, nb, 8, tmp);
    write_all(out, hj.data(), hj.size(), tmp);
    out.close();
    if (!out) throw std::runtime_error("[token file] cannot write " + tmp);
    fs::rename(tmp, out_path);
  } catch (...) {
    std::error_code ec;
    out.close();
    fs::remove(tmp, ec);
    throw;
  }
  return h;
}

std::unique_ptr<Tokenizer> char_tokenizer_of_file(const std::string& text_path) {
  TextPieces pieces(text_path, 16 << 20);
  std::set<char32_t> seen;
  for (std::string piece = pieces.next(); !piece.empty(); piece = pieces.next()) {
    size_t pos = 0;
    char32_t cp;
    while (pos < piece.size() && utf8::next(piece, pos, cp)) seen.insert(cp);
  }
  if (seen.empty()) throw std::runtime_error("[dataset] text file is empty: " + text_path);
  return std::make_unique<CharTokenizer>(std::vector<char32_t>(seen.begin(), seen.end()));
}

}  // namespace bl
