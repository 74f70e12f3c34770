// One source for every vector ISA (simd/targets.h): plain loops that GCC
// vectorises for each target, dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/optimizers/adafactor_kernels.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include "simd/isa.h"
#include "train/optimizers/adafactor_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

double RowColSumsq(const float* g, int64_t n, double* cs) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < n; ++c) {
    const double q = double(g[c]) * double(g[c]);
    s += q;
    cs[c] += q;
  }
  return s;
}

double ScaledSumsq(const float* g, const float* f, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < n; ++c) {
    const double u = double(g[c]) * double(f[c]);
    s += u * u;
  }
  return s;
}

void RowUpdate(float* __restrict w, const float* __restrict g, const float* __restrict f,
               float* __restrict m, int64_t n, float s, float decay, float b1) {
  const float c1 = 1.0f - b1;
  if (m) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) {
      const float mc = b1 * m[c] + c1 * (s * g[c] * f[c]);
      m[c] = mc;
      w[c] = w[c] * decay - mc;
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) w[c] = w[c] * decay - s * g[c] * f[c];
  }
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(RowColSumsq);
HWY_EXPORT(ScaledSumsq);
HWY_EXPORT(RowUpdate);

double adafactor_row_col_sumsq(const float* g, int64_t n, double* cs) {
  return BL_DISPATCH(RowColSumsq)(g, n, cs);
}
double adafactor_scaled_sumsq(const float* g, const float* f, int64_t n) {
  return BL_DISPATCH(ScaledSumsq)(g, f, n);
}
void adafactor_row_update(float* w, const float* g, const float* f, float* m, int64_t n, float s,
                          float decay, float b1) {
  BL_DISPATCH(RowUpdate)(w, g, f, m, n, s, decay, b1);
}

}  // namespace bl
#endif  // HWY_ONCE
