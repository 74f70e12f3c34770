#include "ops/reduce.h"

#include <algorithm>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

constexpr int64_t kChunk = 1 << 14;

// Sum in double over fixed chunks, then the chunk sums in order: the result
// does not depend on the thread count and keeps float32 inputs exact enough
// for losses over millions of elements.
double sum_double(const float* x, int64_t n) {
  const int64_t nc = (n + kChunk - 1) / kChunk;
  double* part = current_graph().alloc_as<double>(std::max<int64_t>(nc, 1));
  parallel_for(nc, [&](int64_t c) {
    const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += x[i];
    part[c] = s;
  });
  double s = 0;
  for (int64_t c = 0; c < nc; ++c) s += part[c];
  return s;
}

// y = factor * sum(a); dy/da_i = factor.
Tensor scaled_sum(const Tensor& a, double factor, const char* name) {
  if (!a.defined()) op_fail(name, "undefined operand");
  Graph& g = current_graph();
  const int64_t n = a.numel();
  Tensor y = g.empty(Shape{1}, g.needs_grad({a}));
  y.data()[0] = float(sum_double(a.data(), n) * factor);
  if (y.requires_grad()) {
    const float f = float(factor);
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* da = current_graph().grad(a);
      const float d = dy[0] * f;
      const int64_t nc = (n + kChunk - 1) / kChunk;
      parallel_for(nc, [&](int64_t c) {
        const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
        for (int64_t i = lo; i < hi; ++i) da[i] += d;
      });
    });
  }
  return y;
}

}  // namespace

Tensor sum(const Tensor& a) {
  return scaled_sum(a, 1.0, "sum");
}

Tensor mean(const Tensor& a) {
  if (!a.defined() || a.numel() == 0) op_fail("mean", "mean of an empty tensor");
  return scaled_sum(a, 1.0 / double(a.numel()), "mean");
}

}  // namespace bl
