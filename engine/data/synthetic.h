// Synthetic tasks for fast experiments: modular arithmetic a o b mod p over
// every pair (a, b), as in the grokking experiments (Power et al. 2022; lmxlab's
// examples), written as text with a held-out split the run's val split hits
// exactly.
#pragma once

#include <cstdint>
#include <string>

namespace bl {

struct ModularTask {
  std::string op = "add";       // add | sub | mul | div (b != 0; b's inverse mod p)
  int64_t p = 97;               // a prime for div (every b != 0 invertible); 2..10000
  double train_fraction = 0.5;  // of the equations, in (0, 1)
  uint64_t seed = 0;            // which equations train
};

struct SyntheticText {
  std::string text;     // the training equations (shuffled), then the held-out ones
  int64_t n_train = 0;  // equations
  int64_t n_val = 0;
  /// train.val_fraction that splits the text's tokens (one per character, so
  /// any tokenizer that keeps digits and symbols apart) exactly between them.
  double val_fraction = 0;
};

/// Every equation "a+b=c" (zero-padded to p's digits, one per line; the
/// operator is + - * /). Throws std::invalid_argument naming the field for an
/// unknown op, p outside 2..10000, a composite p with div, or a train
/// fraction leaving either split empty.
SyntheticText modular_arithmetic(const ModularTask& task);

}  // namespace bl
