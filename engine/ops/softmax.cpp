#include "ops/softmax.h"

#include <Eigen/Core>
#include <algorithm>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
using ArrMap = Eigen::Map<Eigen::ArrayXf>;
using CArrMap = Eigen::Map<const Eigen::ArrayXf>;

int64_t min_rows_per_thread(int64_t d) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1));
}
}  // namespace

Tensor softmax(const Tensor& x) {
  op_check(x.defined() && x.rank() >= 1, "softmax", "input must be at least 1-D");
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t rows = x.rows(), d = x.cols();
  if (x.numel() == 0) return y;
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(
      rows,
      [&](int64_t r) {
        CArrMap xr(xd + r * d, d);
        ArrMap yr(yd + r * d, d);
        // Subtracting the max keeps exp() in range; Eigen's exp is vectorised.
        const float m = xr.maxCoeff();
        yr = (xr - m).exp();
        yr *= 1.0f / yr.sum();
      },
      min_rows_per_thread(d));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      if (!x.requires_grad()) return;
      float* dx = current_graph().grad(x);
      const float* yd = y.data();
      // dx = y * (dy - sum(dy * y))
      parallel_for(
          rows,
          [&](int64_t r) {
            CArrMap yr(yd + r * d, d), dyr(dy + r * d, d);
            ArrMap dxr(dx + r * d, d);
            const float dot = (yr * dyr).sum();
            dxr += yr * (dyr - dot);
          },
          min_rows_per_thread(d));
    });
  }
  return y;
}

}  // namespace bl
