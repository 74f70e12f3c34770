// Elementwise and reduction loops over float spans that training runs every
// step (gradient clipping, replica gradient sums), compiled per vector ISA.
#pragma once

#include <cstdint>

namespace bl {

/// sum of x[i]^2 in double (vector partial sums: the bits depend on the ISA,
/// never on the thread count).
double span_sum_squares(const float* x, int64_t n);

/// x[i] *= c.
void span_scale(float* x, int64_t n, float c);

/// dst[i] += src[i].
void span_add(float* dst, const float* src, int64_t n);

}  // namespace bl
