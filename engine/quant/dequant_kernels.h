// The inner loops of quantized weights (dequantizing a group, a row's dot
// products while decoding), compiled per vector ISA (simd/targets.h).
#pragma once

#include <cstdint>

namespace bl {

/// out[j], j < n (a multiple of 32), from the bits-wide codes packed from bit
/// offset `first` of row: q * s + b (affine), or table[q] * s when a 16-entry
/// table (NF4) is given.
void dequant_group(int bits, const float* table, const uint8_t* row, int64_t first, int64_t n,
                   float s, float b, float* out);

/// y[i * ldy] = sum_c W[c] * x[i * ldx + c] for i < n <= 4, W one quantized
/// row of G groups of gs codes (scales sc, biases bi or null, table as above).
void dot_quantized_row(int bits, const float* table, const uint8_t* row, const float* sc,
                       const float* bi, int64_t groups, int64_t gs, const float* x, int64_t ldx,
                       int64_t n, float* y, int64_t ldy);

}  // namespace bl
