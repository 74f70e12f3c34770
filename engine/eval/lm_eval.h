// Language-model evaluation over a whole token sequence: loss, perplexity and
// bits per byte. Unlike the trainer's eval (20 random fixed batches), every
// target is scored once: the tokens are cut into contiguous windows of
// seq_len (input t[s..s+T), targets t[s+1..s+T]), so each token's context is
// what precedes it within its window.
//
// Bits per byte make tokenizers comparable: the summed loss in nats over the
// scored tokens, / ln 2, / the bytes those tokens spell (their UTF-8 length).
// Equivalently loss / ln 2 / bytes_per_token.
#pragma once

#include <cstdint>
#include <span>

#include "core/model.h"
#include "data/tokenizer.h"

namespace bl {

struct LmEvalResult {
  double loss = 0;             // mean next-token cross-entropy, nats per token
  double perplexity = 0;       // exp(loss)
  double bytes_per_token = 0;  // bytes of the scored tokens / their number
  double bits_per_byte = 0;    // loss / ln 2 / bytes_per_token
  int64_t tokens = 0;          // scored (target) tokens
  int64_t bytes = 0;           // bytes those tokens spell
  int64_t windows = 0;
  int64_t seq_len = 0;  // window length used (shorter than asked for a short text)
};

/// Scores tokens with batch_size windows per forward pass, at most
/// max_batches batches (0: all windows). Needs at least 2 tokens; a text
/// shorter than seq_len + 1 tokens is one shorter window. Throws
/// std::invalid_argument naming the bad argument.
LmEvalResult evaluate_lm(LanguageModel& model, const Tokenizer& tok,
                         std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len,
                         int64_t max_batches = 0);

}  // namespace bl
