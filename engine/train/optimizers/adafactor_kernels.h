// Adafactor's per-row loops, compiled per vector ISA (simd/targets.h).
#pragma once

#include <cstdint>

namespace bl {

/// cs[c] += g[c]^2 for c < n; returns the row's sum of g^2 (double).
double adafactor_row_col_sumsq(const float* g, int64_t n, double* cs);

/// sum of (g[c] * f[c])^2 (double).
double adafactor_scaled_sumsq(const float* g, const float* f, int64_t n);

/// w[c] = w[c] * decay - s * g[c] * f[c], or with a first moment m (not
/// null): m[c] = b1 * m[c] + (1 - b1) * (s * g[c] * f[c]); w[c] = w[c] * decay - m[c].
void adafactor_row_update(float* w, const float* g, const float* f, float* m, int64_t n, float s,
                          float decay, float b1);

}  // namespace bl
