// Normalisation over the last dimension (fused; mean/rstd cached for backward).
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// (x - mean) / sqrt(var + eps) * weight + bias.  weight/bias (D) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
/// x / sqrt(mean(x^2) + eps) * weight.  weight (D) may be undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);

}  // namespace bl
