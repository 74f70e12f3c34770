// IEEE 754 binary16 and bfloat16 <-> binary32, for GGUF / safetensors F16 and
// BF16 tensors (PyTorch's tensor.to(torch.float16 / torch.bfloat16) bit for bit).
#pragma once

#include <cstdint>

namespace bl {

/// Rounds to the nearest half (ties to even); overflow gives +-inf, NaN stays NaN.
uint16_t float_to_half(float f);
/// Exact (every half is a float).
float half_to_float(uint16_t h);
/// The top 16 bits, rounded to nearest, ties to even; NaN stays a quiet NaN.
uint16_t float_to_bf16(float f);

}  // namespace bl
