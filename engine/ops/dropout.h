// Inverted dropout: zero with probability p, scale survivors by 1/(1-p).
#pragma once

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace bl {

/// Identity when !training or p == 0 (returns x itself, no copy).
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng);

}  // namespace bl
