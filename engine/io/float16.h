// IEEE 754 binary16 <-> binary32, for GGUF / safetensors F16 tensors.
#pragma once

#include <cstdint>

namespace bl {

/// Rounds to the nearest half (ties to even); overflow gives +-inf, NaN stays NaN.
uint16_t float_to_half(float f);
/// Exact (every half is a float).
float half_to_float(uint16_t h);

}  // namespace bl
