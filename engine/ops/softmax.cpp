// Row softmax. One source for every vector ISA (simd/targets.h), dispatched at
// run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/softmax.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>

#include "ops/check.h"
#include "ops/softmax.h"
#include "simd/isa.h"
#include "simd/rows-inl.h"
#include "simd/vexp-inl.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {
using D = hn::ScalableTag<float>;
constexpr int64_t kN = HWY_LANES(float);

int64_t min_rows_per_thread(int64_t d) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1));
}
}  // namespace

void SoftmaxFwd(const float* xd, float* yd, int64_t rows, int64_t d) {
  parallel_for(
      rows,
      [&](int64_t r) HWY_ATTR {
        const D dd;
        const float* xr = xd + r * d;
        float* yr = yd + r * d;
        // Subtracting the max keeps exp() in range.
        const auto m = hn::Set(dd, RowMax(xr, d));
        auto sum = hn::Zero(dd);
        int64_t j = 0;
        for (; j + kN <= d; j += kN) {
          const auto e = ExpOrZero(dd, hn::Sub(hn::LoadU(dd, xr + j), m));
          hn::StoreU(e, dd, yr + j);
          sum = hn::Add(sum, e);
        }
        float s = hn::GetLane(hn::SumOfLanes(dd, sum));
        for (; j < d; ++j) {  // the tail through a one-lane vector: the same exp
          const hn::CappedTag<float, 1> d1;
          yr[j] = hn::GetLane(ExpOrZero(d1, hn::Set(d1, xr[j] - hn::GetLane(m))));
          s += yr[j];
        }
        const auto inv = hn::Set(dd, 1.0f / s);
        for (j = 0; j + kN <= d; j += kN)
          hn::StoreU(hn::Mul(hn::LoadU(dd, yr + j), inv), dd, yr + j);
        for (; j < d; ++j) yr[j] *= 1.0f / s;
      },
      min_rows_per_thread(d));
}

// dx += y * (dy - sum(dy * y)) per row.
void SoftmaxBwd(const float* yd, const float* dy, float* dx, int64_t rows, int64_t d) {
  parallel_for(
      rows,
      [&](int64_t r) HWY_ATTR {
        const D dd;
        const float *yr = yd + r * d, *dyr = dy + r * d;
        float* dxr = dx + r * d;
        const float dot = RowDot(yr, dyr, d);
        const auto vdot = hn::Set(dd, dot);
        int64_t j = 0;
        for (; j + kN <= d; j += kN)
          hn::StoreU(hn::MulAdd(hn::LoadU(dd, yr + j), hn::Sub(hn::LoadU(dd, dyr + j), vdot),
                                hn::LoadU(dd, dxr + j)),
                     dd, dxr + j);
        for (; j < d; ++j) dxr[j] += yr[j] * (dyr[j] - dot);
      },
      min_rows_per_thread(d));
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(SoftmaxFwd);
HWY_EXPORT(SoftmaxBwd);

Tensor softmax(const Tensor& x) {
  op_check(x.defined() && x.rank() >= 1, "softmax", "input must be at least 1-D");
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t rows = x.rows(), d = x.cols();
  if (x.numel() == 0) return y;
  BL_DISPATCH(SoftmaxFwd)(x.data(), y.data(), rows, d);
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      if (!x.requires_grad()) return;
      BL_DISPATCH(SoftmaxBwd)(y.data(), dy, current_graph().grad(x), rows, d);
    });
  }
  return y;
}

}  // namespace bl
#endif  // HWY_ONCE
