// The two products of a LoRA update, as ops with backward:
//   h = x · [A_1; A_2; ...]ᵀ           (lora_down: one GEMM for several adapters,
//                                       e.g. the q, k and v adapters of one input)
//   y = base + s · h[:, off:off+r] · Bᵀ (lora_up: adds one adapter's output)
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace bl {

/// x (..., in), each A_i (r_i, in) -> h (..., sum r_i), columns in the order given.
Tensor lora_down(const Tensor& x, const std::vector<Tensor>& as);

/// base (..., out), h (..., H), B (out, r), columns [off, off + r) of h:
/// returns base + s · h[..., off:off+r] · Bᵀ. Gradients reach base, h and B.
Tensor lora_up(const Tensor& base, const Tensor& h, int64_t off, const Tensor& b, float s);

/// lora_up writing into base's own buffer (no copy): the result is a view of
/// base, sharing its data and gradient buffer, so base is overwritten. For an
/// intermediate that nothing else reads (a Linear's base output).
Tensor lora_up_inplace(const Tensor& base, const Tensor& h, int64_t off, const Tensor& b, float s);

}  // namespace bl
