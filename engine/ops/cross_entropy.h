// Fused softmax + negative log-likelihood over the last dimension.
#pragma once

#include "ops/embedding.h"
#include "tensor/tensor.h"

namespace bl {

/// logits (..., V), targets (...) -> mean loss over targets >= 0 (negative ids are
/// ignored), shape (1). Throws "[cross_entropy] ..." on a target >= V.
Tensor cross_entropy(const Tensor& logits, const Tokens& targets);

}  // namespace bl
