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

/// The same two operations with the chunking of the gradients computed once,
/// so the per-step calls allocate nothing (the trainer keeps one).
class GradClipper {
 public:
  explicit GradClipper(const std::vector<Parameter*>& params);
  double norm();
  /// Norm before clipping; scales gradients when it exceeds max_norm (> 0).
  double clip(double max_norm);

 private:
  struct Span {
    float* g;
    int64_t n;
  };
  std::vector<Span> chunks_;
  std::vector<double> partial_;
};

}  // namespace bl
