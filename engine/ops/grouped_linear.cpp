#include "ops/grouped_linear.h"

#include <string>

#include "ops/check.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
// Many small segments: one single-threaded GEMM per thread beats Eigen's own
// threading of each small GEMM. Large segments, or too little work to be worth
// a parallel region: one segment after the other.
template <class F>
void over_groups(int64_t groups, int64_t rows, int64_t in, int64_t out, F&& f) {
  if (groups > 1 && rows < 64 * groups && rows * in * out >= (1 << 16))
    parallel_for(groups, f);
  else
    for (int64_t gi = 0; gi < groups; ++gi) f(gi);
}
}  // namespace

Tensor grouped_linear(const Tensor& x, const Tensor& w, const Tensor& b, const int64_t* offsets) {
  op_check(w.defined() && w.rank() == 3, "grouped_linear",
           "weight must be (groups, out, in), got " + (w.defined() ? w.shape().str() : "none"));
  const int64_t groups = w.dim(0), out = w.dim(1), in = w.dim(2);
  op_check(x.defined() && x.rank() == 2 && x.cols() == in, "grouped_linear",
           "input " + x.shape().str() + " does not fit weight " + w.shape().str());
  op_check(!b.defined() || (b.numel() == groups * out), "grouped_linear",
           "bias " + (b.defined() ? b.shape().str() : "") +
               " must have groups * out = " + std::to_string(groups * out) + " elements");
  const int64_t m = x.rows();
  op_check(offsets[0] == 0 && offsets[groups] == m, "grouped_linear",
           "offsets must start at 0 and end at the row count " + std::to_string(m));
  for (int64_t gi = 0; gi < groups; ++gi)
    op_check(offsets[gi] <= offsets[gi + 1], "grouped_linear", "offsets must be non-decreasing");
  Graph& g = current_graph();
  Tensor y = g.empty(Shape{m, out}, g.needs_grad({x, w, b}));
  const float* xd = x.data();
  const float* wd = w.data();
  const float* bd = b.defined() ? b.data() : nullptr;
  float* yd = y.data();
  over_groups(groups, m, in, out, [&](int64_t gi) {
    const int64_t r0 = offsets[gi], rows = offsets[gi + 1] - r0;
    if (rows == 0) return;
    float* ys = yd + r0 * out;
    if (bd)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < out; ++j) ys[r * out + j] = bd[gi * out + j];
    gemm(false, true, rows, out, in, 1.0f, xd + r0 * in, in, wd + gi * out * in, in,
         bd ? 1.0f : 0.0f, ys, out);
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      float* dx = gg.grad_if_required(x);
      float* dw = gg.grad_if_required(w);
      float* db = b.defined() ? gg.grad_if_required(b) : nullptr;
      over_groups(groups, m, in, out, [&](int64_t gi) {
        const int64_t r0 = offsets[gi], rows = offsets[gi + 1] - r0;
        if (rows == 0) return;  // unused expert: no gradient at all
        const float* dys = dy + r0 * out;
        if (dx)
          gemm(false, false, rows, in, out, 1.0f, dys, out, wd + gi * out * in, in, 1.0f,
               dx + r0 * in, in);
        if (dw)
          gemm(true, false, out, in, rows, 1.0f, dys, out, xd + r0 * in, in, 1.0f,
               dw + gi * out * in, in);
        if (db)
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < out; ++j) db[gi * out + j] += dys[r * out + j];
      });
    });
  }
  return y;
}

}  // namespace bl
