// One source for every vector ISA (simd/targets.h): plain loops that GCC
// vectorises for each target, dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/span_ops.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include "simd/isa.h"
#include "simd/span_ops.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

double SumSquares(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

void Scale(float* x, int64_t n, float c) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= c;
}

void Add(float* __restrict dst, const float* __restrict src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(SumSquares);
HWY_EXPORT(Scale);
HWY_EXPORT(Add);

double span_sum_squares(const float* x, int64_t n) {
  return BL_DISPATCH(SumSquares)(x, n);
}
void span_scale(float* x, int64_t n, float c) {
  BL_DISPATCH(Scale)(x, n, c);
}
void span_add(float* dst, const float* src, int64_t n) {
  BL_DISPATCH(Add)(dst, src, n);
}

}  // namespace bl
#endif  // HWY_ONCE
