// Text corpus -> token ids -> deterministic train/val split -> random batches.
// Matches torch_ref.py: first floor((1 - val_fraction) * n) tokens train, the rest
// val; each batch is batch_size windows with start uniform in [0, len - T - 1).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/rng.h"

namespace bl {

class Tokenizer;
class MappedTokens;

/// Throws what read_text_file throws for a path that is missing, a directory,
/// not a regular file (a FIFO, a device) or over the corpus size limit,
/// without opening it: a FIFO cannot block the check.
void check_text_file(const std::string& path);

/// Reads a whole UTF-8 text file. Throws std::runtime_error naming the path if it is
/// missing, a directory, unreadable, empty, or not valid UTF-8 (with the byte offset).
std::string read_text_file(const std::string& path);

class TextDataset {
 public:
  /// Encodes text with tok and splits it. val_fraction in [0, 1).
  TextDataset(std::string_view text, const Tokenizer& tok, double val_fraction = 0.1);
  /// read_text_file(path) + the constructor above.
  static TextDataset from_file(const std::string& path, const Tokenizer& tok,
                               double val_fraction = 0.1);

  /// The ids of a token file (data/token_file.h), memory-mapped: only the
  /// pages training touches are read. Every id must be < vocab_size. The same
  /// split rule. Throws std::runtime_error naming the file and the problem.
  static TextDataset from_token_file(const std::string& path, int64_t vocab_size,
                                     double val_fraction = 0.1);

  std::span<const int32_t> tokens() const;
  std::span<const int32_t> train() const { return tokens().first(size_t(n_train_)); }
  std::span<const int32_t> val() const { return tokens().subspan(size_t(n_train_)); }
  int64_t size() const { return int64_t(tokens().size()); }
  int64_t train_size() const { return n_train_; }
  int64_t val_size() const { return size() - n_train_; }
  /// Whether the ids are a mapped token file rather than encoded text.
  bool mapped() const { return mapped_ != nullptr; }

 private:
  TextDataset() = default;
  std::vector<int32_t> tokens_;                 // encoded text
  std::shared_ptr<const MappedTokens> mapped_;  // or a token file
  int64_t n_train_ = 0;
};

/// Train/val split point: floor((1 - val_fraction) * n), as torch_ref's int(0.9 * n).
int64_t train_split_size(int64_t n_tokens, double val_fraction);

/// Draws batches of random windows from one split. Does not own the tokens: the
/// span must outlive the sampler. Deterministic for a seed.
class BatchSampler {
 public:
  /// Checkpointable position of the stream.
  struct State {
    std::array<uint64_t, 4> rng{};
    int64_t batches_drawn = 0;
  };

  /// Throws std::invalid_argument if the split has fewer than seq_len + 2 tokens.
  /// split_name ("train", "val") only labels error messages.
  BatchSampler(std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len, uint64_t seed,
               std::string_view split_name = "train");

  /// Writes the next batch: x[b*T + t] = tokens[i_b + t], y[b*T + t] = tokens[i_b + t + 1].
  /// x and y each hold batch_size * seq_len ints; nothing is allocated.
  void next(int32_t* x, int32_t* y);
  /// Same with size checks.
  void next(std::span<int32_t> x, std::span<int32_t> y);

  State state() const { return {rng_.state(), batches_drawn_}; }
  void set_state(const State& s);

  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t batches_drawn() const { return batches_drawn_; }
  /// Number of distinct window starts: len - seq_len - 1.
  int64_t num_starts() const { return n_starts_; }

 private:
  std::span<const int32_t> tokens_;
  int64_t batch_size_, seq_len_, n_starts_;
  Rng rng_;
  int64_t batches_drawn_ = 0;
};

/// Seed of the fixed evaluation batches (torch_ref: torch.Generator().manual_seed(1337)).
constexpr uint64_t kEvalSeed = 1337;

/// A fixed set of batches, e.g. the validation set every run is scored on.
struct FixedBatches {
  int64_t n_batches = 0, batch_size = 0, seq_len = 0;
  std::vector<int32_t> x, y;  // n_batches * batch_size * seq_len each
  const int32_t* x_batch(int64_t i) const { return x.data() + i * batch_size * seq_len; }
  const int32_t* y_batch(int64_t i) const { return y.data() + i * batch_size * seq_len; }
};

/// n_batches batches drawn from tokens by a BatchSampler seeded with seed (own
/// generator, independent of training): identical for every run with the same split.
FixedBatches make_eval_batches(std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len,
                               int64_t n_batches, uint64_t seed = kEvalSeed,
                               std::string_view split_name = "val");

}  // namespace bl
