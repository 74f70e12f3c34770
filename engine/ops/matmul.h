// Matrix products (Eigen GEMM via bl::gemm).
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// y = x Wᵀ + b (+ residual).  x (..., in), w (out, in), b (out) or
/// undefined; residual undefined or of y's shape. The residual is added in the
/// GEMM's epilogue (a block's x + sublayer(x) without a pass of its own) and
/// gets dy as its gradient, sharing dy's buffer when it can.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
              const Tensor& residual = Tensor());

/// linear(gelu(h), w, b, residual) in one op: the GELU values never get a
/// gradient buffer of their own, since backward gates dy W by GELU'(h) in the
/// GEMM's epilogue (one pass over dh instead of three).
Tensor gelu_linear(const Tensor& h, const Tensor& w, const Tensor& b = Tensor(),
                   const Tensor& residual = Tensor());

/// Batched product. a (..., M, K); b (..., K, N) with the same leading dims,
/// or b (K, N) shared by every batch. trans_b: b holds (..., N, K).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_b = false);

}  // namespace bl
