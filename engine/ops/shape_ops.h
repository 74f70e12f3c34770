// Shape manipulation. reshape is a view (shares data and gradient); the others copy.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace bl {

/// Same data, new shape (numel must match). The gradient buffer is shared too
/// (created on the spot if the input requires grad), so no backward step is recorded.
Tensor reshape(const Tensor& a, const Shape& s);
/// Swaps dimensions d0 and d1 (negative counts from the back).
Tensor transpose(const Tensor& a, int d0, int d1);
/// Elements [start, end) along dim; needs 0 <= start <= end <= size.
Tensor slice(const Tensor& a, int dim, int64_t start, int64_t end);
/// Concatenation along dim; all other dims must match.
Tensor concat(const std::vector<Tensor>& parts, int dim);

}  // namespace bl
