// Token ids and the embedding gather.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// A non-owning view of integer token ids (row-major, like Tensor).
struct Tokens {
  const int32_t* data = nullptr;
  Shape shape;
  int64_t numel() const { return shape.numel(); }
};

/// weight (V, D), ids (...) -> (..., D). Throws "[embedding] ..." on an id outside [0, V).
/// Backward scatter-adds into weight's gradient.
Tensor embedding(const Tensor& weight, const Tokens& ids);

}  // namespace bl
