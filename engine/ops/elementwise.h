// Elementwise arithmetic with NumPy broadcasting (shapes aligned at the back;
// a dimension of 1 or a missing leading dimension broadcasts). Fast paths for
// equal shapes and for one operand repeating over the other's leading dims
// ((B, T, D) + (T, D), (N, D) * (D), x * (1)); any other pattern up to rank 4
// takes a strided path. Backward sums the gradient over broadcast dims.
// Shape errors throw "[add] ..." (etc.) naming both shapes.
#pragma once

#include "tensor/tensor.h"

namespace bl {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// a * s
Tensor scale(const Tensor& a, float s);
/// a + s
Tensor add_scalar(const Tensor& a, float s);
/// Shape of broadcasting a with b; throws "[broadcast] ..." if incompatible.
Shape broadcast_shape(const Shape& a, const Shape& b);

}  // namespace bl
