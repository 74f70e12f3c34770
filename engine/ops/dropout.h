// Inverted dropout: zero with probability p, scale survivors by 1/(1-p).
#pragma once

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace bl {

/// Identity when !training or p == 0 (returns x itself, no copy, no draws from rng).
/// Otherwise draws one uniform per element from rng, serially, so a seed gives
/// the same mask for any thread count. Throws "[dropout] ..." unless 0 <= p < 1.
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng);

}  // namespace bl
