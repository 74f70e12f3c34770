#include "ops/row_reduce.h"

#include <algorithm>
#include <cmath>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
Shape keep_last_as_one(const Shape& s) {
  Shape out = s;
  out[-1] = 1;
  return out;
}
int64_t min_rows(int64_t d) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1));
}
}  // namespace

Tensor row_sum(const Tensor& x) {
  op_check(x.defined() && x.rank() >= 1, "row_sum", "input must be at least 1-D");
  Graph& g = current_graph();
  Tensor y = g.empty(keep_last_as_one(x.shape()), g.needs_grad({x}));
  const int64_t rows = x.rows(), d = x.cols();
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(
      rows,
      [&](int64_t r) {
        float s = 0;
        for (int64_t c = 0; c < d; ++c) s += xd[r * d + c];
        yd[r] = s;
      },
      min_rows(d));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      parallel_for(
          rows,
          [&](int64_t r) {
            for (int64_t c = 0; c < d; ++c) dx[r * d + c] += dy[r];
          },
          min_rows(d));
    });
  }
  return y;
}

Tensor logsumexp_rows(const Tensor& x) {
  op_check(x.defined() && x.rank() >= 1 && x.cols() > 0, "logsumexp_rows",
           "input must be at least 1-D with a non-empty last dimension");
  Graph& g = current_graph();
  Tensor y = g.empty(keep_last_as_one(x.shape()), g.needs_grad({x}));
  const int64_t rows = x.rows(), d = x.cols();
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* xr = xd + r * d;
        const float m = *std::max_element(xr, xr + d);
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += std::exp(double(xr[c] - m));
        yd[r] = m + float(std::log(s));
      },
      min_rows(d));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      const float* yd = y.data();
      // d lse / d x_c = softmax(x)_c = exp(x_c - lse)
      parallel_for(
          rows,
          [&](int64_t r) {
            for (int64_t c = 0; c < d; ++c)
              dx[r * d + c] += dy[r] * std::exp(xd[r * d + c] - yd[r]);
          },
          min_rows(d));
    });
  }
  return y;
}

}  // namespace bl
