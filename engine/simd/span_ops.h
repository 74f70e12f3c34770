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

/// out[i] = 1 / (1 + exp(-x[i])) (out may be x).
void span_sigmoid(const float* x, float* out, int64_t n);

/// out[i] = x[i] * sigmoid(x[i]) (SiLU; out may be x).
void span_silu(const float* x, float* out, int64_t n);

/// out[i] = exp(c - s[i]), 0 below exp(-87) (decay factors; out may be s).
void span_exp_sub(float c, const float* s, int64_t n, float* out);

}  // namespace bl
