// Softmax over the last dimension (numerically stable).
#pragma once

#include "tensor/tensor.h"

namespace bl {

Tensor softmax(const Tensor& x);

}  // namespace bl
