// Ops on quantized (frozen) weights. The weight is dequantized on the fly, a
// tile of rows at a time, into a small per-thread scratch buffer from the graph
// arena and multiplied with gemm(): no float copy of the whole weight exists.
#pragma once

#include "ops/embedding.h"
#include "quant/quantized_matrix.h"
#include "tensor/tensor.h"

namespace bl {

/// y = x Wᵀ + b.  x (..., in), W (out, in) quantized, b (out) or undefined.
/// Backward reaches x and b only: a quantized weight is frozen.
Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const Tensor& b = Tensor());

/// Rows of a quantized table (V, D) for ids (...) -> (..., D); no gradient.
Tensor quantized_embedding(const QuantizedMatrix& w, const Tokens& ids);

/// Rows of W per tile in quantized_linear (scratch = tile * in floats per thread).
int64_t quantized_tile_rows(int64_t in);

}  // namespace bl
