// Reductions.
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// Sum of all elements -> shape (1).
Tensor sum(const Tensor& a);
/// Mean of all elements -> shape (1).
Tensor mean(const Tensor& a);

}  // namespace bl
