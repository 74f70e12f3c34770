// Trains a byte-level BPE vocabulary on a corpus: GPT-2 pre-tokenisation,
// ids 0..255 are the bytes, then merges of the most frequent adjacent pair
// (ties: the smaller id pair) until vocab_size tokens or no pair is left.
// Pair counts are kept incrementally with a pair -> words index and a lazy
// max-heap, so a merge touches only the words that contain its pair
// (tinyshakespeare, 1.1 MB, to 4k merges: README, bench/bpe_bench.cpp).
// Deterministic: words are numbered in order of first appearance.
#pragma once

#include <cstdint>
#include <string_view>

#include "data/bpe_tokenizer.h"

namespace bl {

struct BpeTrainStats {
  int64_t pieces = 0;        // pre-tokenised pieces of the corpus
  int64_t unique_words = 0;  // distinct pieces
  int64_t merges = 0;        // merges learned
  bool exhausted = false;    // stopped before vocab_size: every piece is one token
};

/// vocab_size in [256, 2^24). Throws std::invalid_argument naming vocab_size.
BpeTokenizer train_bpe(std::string_view corpus, int64_t vocab_size, BpeTrainStats* stats = nullptr);

}  // namespace bl
