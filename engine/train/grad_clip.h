// Global gradient norm and clipping (torch.nn.utils.clip_grad_norm_ semantics).
#pragma once

#include <vector>

#include "tensor/parameter.h"

namespace bl {

/// L2 norm of all gradients of trainable params, accumulated in double. A param
/// listed twice (tied weights) counts once. The result does not depend on the
/// thread count (fixed chunking, partial sums added in order).
double global_grad_norm(const std::vector<Parameter*>& params);

/// Computes the global norm and, if max_norm > 0 and max_norm / (norm + 1e-6) < 1,
/// scales every gradient by that coefficient (torch's formula). Returns the norm
/// BEFORE clipping. A non-finite norm is returned as is and leaves the gradients
/// untouched (the caller decides to stop). max_norm <= 0 disables clipping.
double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm);

}  // namespace bl
