// Rotary position embedding, rotate-half layout (GPT-NeoX / HF Llama).
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// x (B, T, H*head_dim). Rotates the first rot_dim (even, <= head_dim; 0 = all)
/// dims of every head: pairs (i, i + rot_dim/2), angle pos * theta^(-2i/rot_dim),
/// pos = pos_offset + t.
Tensor rope(const Tensor& x, int64_t n_heads, float theta, int64_t pos_offset = 0,
            int64_t rot_dim = 0);

}  // namespace bl
