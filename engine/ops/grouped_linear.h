// Grouped linear layer for mixture-of-experts: consecutive row segments of x
// go through different weight matrices, one GEMM per non-empty segment.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// x (M, in), w (G, out, in), b (G, out) or undefined, offsets (G + 1) with
/// offsets[0] = 0, offsets[G] = M, non-decreasing: rows [offsets[g], offsets[g+1])
/// of y (M, out) = x_rows w[g]ᵀ + b[g]. An empty segment reads and writes nothing,
/// so groups without rows get exactly zero gradient. offsets must outlive backward.
Tensor grouped_linear(const Tensor& x, const Tensor& w, const Tensor& b, const int64_t* offsets);

}  // namespace bl
