// Pointwise activations (fused forward/backward, parallel over elements).
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (not the tanh form). Phi is
/// evaluated by a vectorised erfc approximation accurate to float rounding
/// (max relative error ~4e-7 over [-20, 20], tails included).
Tensor gelu(const Tensor& x);
/// The values behind gelu(), for fused ops: y = GELU(x) of n floats and, when
/// dydx is not null, the derivative GELU'(x) from the same evaluation.
void gelu_values(const float* x, int64_t n, float* y, float* dydx);
/// gelu_values over rows x rows of cols floats (x contiguous) into y and dydx
/// with row stride ld >= cols (dydx may be null).
void gelu_rows(const float* x, int64_t rows, int64_t cols, float* y, float* dydx, int64_t ld);
/// The tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
/// (GPT-2's "gelu_new", PyTorch's approximate="tanh").
Tensor gelu_tanh(const Tensor& x);
/// x * sigmoid(x)
Tensor silu(const Tensor& x);
Tensor relu(const Tensor& x);
/// relu(x)^2 (Primer / Nemotron)
Tensor relu2(const Tensor& x);
Tensor sigmoid(const Tensor& x);
/// SwiGLU gate: silu(gate) * up, fused (no intermediate tensors).
Tensor swiglu(const Tensor& gate, const Tensor& up);
/// Squared-ReLU gate: relu(gate)^2 * up, fused (gated_relu2 FFN).
Tensor relu2_glu(const Tensor& gate, const Tensor& up);
/// GeGLU with the tanh GELU: gelu_tanh(gate) * up, fused (Gemma's MLP).
Tensor geglu_tanh(const Tensor& gate, const Tensor& up);

}  // namespace bl
