// One source for every vector ISA (simd/targets.h): plain loops that GCC
// vectorises for each target and Highway vector math, dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/span_ops.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include "simd/isa.h"
#include "simd/span_ops.h"
#include "simd/vexp-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);

// f on whole vectors of [0, n), then on the tail through one-lane vectors, so
// every element takes the same formula.
template <class F>
HWY_INLINE void map_span(const float* x, float* out, int64_t n, F&& f) {
  const D d;
  int64_t i = 0;
  for (; i + kN <= n; i += kN) hn::StoreU(f(d, hn::LoadU(d, x + i)), d, out + i);
  const hn::CappedTag<float, 1> d1;
  for (; i < n; ++i) out[i] = hn::GetLane(f(d1, hn::Set(d1, x[i])));
}

template <class DD>
HWY_INLINE hn::Vec<DD> sigmoid_v(DD d, hn::Vec<DD> x) {
  return hn::Div(hn::Set(d, 1.0f), hn::Add(hn::Set(d, 1.0f), Exp(d, hn::Neg(x))));
}
}  // namespace

void Sigmoid(const float* x, float* out, int64_t n) {
  map_span(x, out, n, [](auto d, auto v) HWY_ATTR { return sigmoid_v(d, v); });
}

void Silu(const float* x, float* out, int64_t n) {
  map_span(x, out, n, [](auto d, auto v) HWY_ATTR { return hn::Mul(v, sigmoid_v(d, v)); });
}

void ExpSub(float c, const float* s, int64_t n, float* out) {
  map_span(s, out, n,
           [c](auto d, auto v) HWY_ATTR { return ExpOrZero(d, hn::Sub(hn::Set(d, c), v)); });
}

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
HWY_EXPORT(Sigmoid);
HWY_EXPORT(Silu);
HWY_EXPORT(ExpSub);

double span_sum_squares(const float* x, int64_t n) {
  return BL_DISPATCH(SumSquares)(x, n);
}
void span_scale(float* x, int64_t n, float c) {
  BL_DISPATCH(Scale)(x, n, c);
}
void span_add(float* dst, const float* src, int64_t n) {
  BL_DISPATCH(Add)(dst, src, n);
}
void span_sigmoid(const float* x, float* out, int64_t n) {
  BL_DISPATCH(Sigmoid)(x, out, n);
}
void span_silu(const float* x, float* out, int64_t n) {
  BL_DISPATCH(Silu)(x, out, n);
}
void span_exp_sub(float c, const float* s, int64_t n, float* out) {
  BL_DISPATCH(ExpSub)(c, s, n, out);
}

}  // namespace bl
#endif  // HWY_ONCE
