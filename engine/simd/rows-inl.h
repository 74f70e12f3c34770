// Reductions over a row of floats (sum, max, dot) as Highway vector code for
// the kernels of every target (Highway's -inl.h convention): vector partial
// results, one horizontal reduction, a scalar tail.
#if defined(BL_SIMD_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BL_SIMD_ROWS_INL_H_
#undef BL_SIMD_ROWS_INL_H_
#else
#define BL_SIMD_ROWS_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

/// sum of x[0, n): two vector chains (the adds do not wait on each other).
HWY_INLINE float RowSum(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  constexpr int64_t kN = HWY_LANES(float);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  int64_t j = 0;
  for (; j + 2 * kN <= n; j += 2 * kN) {
    a0 = hn::Add(a0, hn::LoadU(d, x + j));
    a1 = hn::Add(a1, hn::LoadU(d, x + j + kN));
  }
  for (; j + kN <= n; j += kN) a0 = hn::Add(a0, hn::LoadU(d, x + j));
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
  for (; j < n; ++j) s += x[j];
  return s;
}

/// sum of a[i] * b[i], i < n.
HWY_INLINE float RowDot(const float* a, const float* b, int64_t n) {
  const hn::ScalableTag<float> d;
  constexpr int64_t kN = HWY_LANES(float);
  auto acc = hn::Zero(d);
  int64_t i = 0;
  for (; i + kN <= n; i += kN) acc = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc);
  float s = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// max of x[0, n), n >= 1 (NaN-free input: the order of a NaN's comparisons
/// is unspecified).
HWY_INLINE float RowMax(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  constexpr int64_t kN = HWY_LANES(float);
  int64_t j = 0;
  float m = x[0];
  if (n >= kN) {
    auto acc = hn::LoadU(d, x);
    for (j = kN; j + kN <= n; j += kN) acc = hn::Max(acc, hn::LoadU(d, x + j));
    m = hn::GetLane(hn::MaxOfLanes(d, acc));
  }
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
