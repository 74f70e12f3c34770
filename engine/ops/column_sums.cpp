// One source for every vector ISA (simd/targets.h), dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/column_sums.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include "ops/column_sums.h"
#include "simd/isa.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void AddColumnSums(const float* dy, int64_t ld, int64_t rows, int64_t w, float* db) {
  using D = hn::ScalableTag<float>;
  const D d;
  constexpr int64_t kN = HWY_LANES(float);
  constexpr int64_t kV = kColumnSumWidth / kN;
  if (w == kColumnSumWidth) {
    hn::Vec<D> acc[kV];
    for (int64_t v = 0; v < kV; ++v) acc[v] = hn::Zero(d);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t v = 0; v < kV; ++v) acc[v] = hn::Add(acc[v], hn::LoadU(d, dy + r * ld + v * kN));
    for (int64_t v = 0; v < kV; ++v)
      hn::StoreU(hn::Add(hn::LoadU(d, db + v * kN), acc[v]), d, db + v * kN);
    return;
  }
  float acc[kColumnSumWidth] = {};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < w; ++j) acc[j] += dy[r * ld + j];
  for (int64_t j = 0; j < w; ++j) db[j] += acc[j];
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {
HWY_EXPORT(AddColumnSums);

void add_column_sums(const float* dy, int64_t ld, int64_t rows, int64_t w, float* db) {
  BL_DISPATCH(AddColumnSums)(dy, ld, rows, w, db);
}
}  // namespace bl
#endif  // HWY_ONCE
