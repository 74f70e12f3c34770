// Softmax over the last dimension (numerically stable).
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// y = exp(x - max) / sum(exp(x - max)) per row of the last dimension.
Tensor softmax(const Tensor& x);

}  // namespace bl
