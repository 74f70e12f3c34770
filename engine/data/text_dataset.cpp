#include "data/text_dataset.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data/token_file.h"
#include "data/tokenizer.h"
#include "data/utf8.h"

namespace bl {

void check_text_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw std::runtime_error("[dataset] text file not found: " + path);
  if (fs::is_directory(st))
    throw std::runtime_error("[dataset] " + path + " is a directory, not a text file");
  // A FIFO would block forever and a device (/dev/zero) read until memory runs out.
  if (!fs::is_regular_file(st))
    throw std::runtime_error("[dataset] " + path +
                             " is not a regular file (a FIFO or device); only regular files are "
                             "read");
  constexpr std::uintmax_t kMaxBytes = std::uintmax_t(4) << 30;
  if (fs::file_size(path, ec) > kMaxBytes || ec)
    throw std::runtime_error("[dataset] " + path + " is larger than 4 GiB (the corpus limit)");
}

std::string read_text_file(const std::string& path) {
  check_text_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("[dataset] cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error("[dataset] error while reading " + path);
  std::string text = std::move(ss).str();
  if (text.empty()) throw std::runtime_error("[dataset] text file is empty: " + path);
  const size_t bad = utf8::find_invalid(text);
  if (bad != std::string_view::npos)
    throw std::runtime_error("[dataset] " + path + " is not valid UTF-8 (byte offset " +
                             std::to_string(bad) + ")");
  return text;
}

int64_t train_split_size(int64_t n_tokens, double val_fraction) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw std::invalid_argument("[dataset] val_fraction must be in [0, 1), got " +
                                std::to_string(val_fraction));
  // Python's int(0.9 * n): the product in double, truncated. For val_fraction = 0.1,
  // 1.0 - 0.1 is exactly the double 0.9, so the split point is bit-identical.
  return int64_t(std::floor((1.0 - val_fraction) * double(n_tokens)));
}

TextDataset::TextDataset(std::string_view text, const Tokenizer& tok, double val_fraction) {
  tokens_ = tok.encode(text);
  if (tokens_.empty()) throw std::invalid_argument("[dataset] the text encodes to no tokens");
  n_train_ = train_split_size(int64_t(tokens_.size()), val_fraction);
}

TextDataset TextDataset::from_token_file(const std::string& path, int64_t vocab_size,
                                         double val_fraction) {
  TextDataset d;
  d.mapped_ = std::make_shared<const MappedTokens>(path, vocab_size);
  d.n_train_ = train_split_size(d.size(), val_fraction);
  return d;
}

std::span<const int32_t> TextDataset::tokens() const {
  return mapped_ ? mapped_->tokens() : std::span<const int32_t>(tokens_);
}

TextDataset TextDataset::from_file(const std::string& path, const Tokenizer& tok,
                                   double val_fraction) {
  return TextDataset(read_text_file(path), tok, val_fraction);
}

BatchSampler::BatchSampler(std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len,
                           uint64_t seed, std::string_view split_name)
    : tokens_(tokens), batch_size_(batch_size), seq_len_(seq_len), n_starts_(0), rng_(seed) {
  if (batch_size < 1 || seq_len < 1)
    throw std::invalid_argument("[dataset] batch_size and seq_len must be >= 1 (got " +
                                std::to_string(batch_size) + ", " + std::to_string(seq_len) + ")");
  const int64_t len = int64_t(tokens.size());
  if (len < seq_len + 2)
    throw std::invalid_argument("[dataset] the " + std::string(split_name) + " split has " +
                                std::to_string(len) +
                                " tokens, fewer than seq_len + 2 = " + std::to_string(seq_len + 2) +
                                " (seq_len " + std::to_string(seq_len) + ")");
  n_starts_ = len - seq_len - 1;  // torch.randint(len(data) - T - 1): starts in [0, len-T-1)
}

void BatchSampler::next(int32_t* x, int32_t* y) {
  const int32_t* src = tokens_.data();
  const int64_t T = seq_len_;
  for (int64_t b = 0; b < batch_size_; ++b) {
    const int64_t i = int64_t(rng_.below(uint64_t(n_starts_)));
    const int32_t* s = src + i;
    int32_t* xb = x + b * T;
    int32_t* yb = y + b * T;
    for (int64_t t = 0; t < T; ++t) xb[t] = s[t];
    for (int64_t t = 0; t < T; ++t) yb[t] = s[t + 1];
  }
  ++batches_drawn_;
}

void BatchSampler::next(std::span<int32_t> x, std::span<int32_t> y) {
  const size_t need = size_t(batch_size_ * seq_len_);
  if (x.size() != need || y.size() != need)
    throw std::invalid_argument(
        "[dataset] batch buffers must hold batch_size * seq_len = " + std::to_string(need) +
        " ints (got " + std::to_string(x.size()) + ", " + std::to_string(y.size()) + ")");
  next(x.data(), y.data());
}

void BatchSampler::set_state(const State& s) {
  if (s.batches_drawn < 0) throw std::invalid_argument("[dataset] negative batches_drawn");
  rng_.set_state(s.rng);
  batches_drawn_ = s.batches_drawn;
}

FixedBatches make_eval_batches(std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len,
                               int64_t n_batches, uint64_t seed, std::string_view split_name) {
  if (n_batches < 1)
    throw std::invalid_argument("[dataset] eval batches must be >= 1, got " +
                                std::to_string(n_batches));
  BatchSampler s(tokens, batch_size, seq_len, seed, split_name);
  FixedBatches fb;
  fb.n_batches = n_batches;
  fb.batch_size = batch_size;
  fb.seq_len = seq_len;
  const size_t per = size_t(batch_size * seq_len);
  fb.x.resize(per * size_t(n_batches));
  fb.y.resize(per * size_t(n_batches));
  for (int64_t i = 0; i < n_batches; ++i)
    s.next(fb.x.data() + per * size_t(i), fb.y.data() + per * size_t(i));
  return fb;
}

}  // namespace bl
