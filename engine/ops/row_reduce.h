// Reductions over the last dimension that keep it as size 1 (broadcastable back).
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// (..., D) -> (..., 1): sum over the last dimension.
Tensor row_sum(const Tensor& x);
/// (..., D) -> (..., 1): log(sum(exp(x))) over the last dimension, max-shifted.
Tensor logsumexp_rows(const Tensor& x);

}  // namespace bl
