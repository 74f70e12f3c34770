#include "ops/index.h"

#include <algorithm>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

constexpr int64_t kColBlock = 64;

// f(c0, c1) over column blocks. Scatters parallelise over columns so two
// threads never add into the same element, whatever the index pattern.
template <class F>
void over_column_blocks(int64_t cols, int64_t rows, F&& f) {
  if (cols * rows < (1 << 15) || cols < 2 * kColBlock) {
    f(int64_t(0), cols);
    return;
  }
  parallel_chunks(cols, kColBlock, f);
}

void check_indices(const int32_t* idx, int64_t n, int64_t bound, const char* op) {
  for (int64_t i = 0; i < n; ++i)
    op_check(idx[i] >= 0 && idx[i] < bound, op,
             "index " + std::to_string(idx[i]) + " at position " + std::to_string(i) +
                 " is outside [0, " + std::to_string(bound) + ")");
}

}  // namespace

Tensor gather_rows(const Tensor& x, const int32_t* idx, int64_t n) {
  op_check(x.defined() && x.rank() >= 1, "gather_rows", "input must be at least 1-D");
  const int64_t rows = x.rows(), cols = x.cols();
  check_indices(idx, n, rows, "gather_rows");
  Graph& g = current_graph();
  Tensor y = g.empty(Shape{n, cols}, g.needs_grad({x}));
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(
      n, [&](int64_t i) { std::copy_n(xd + int64_t(idx[i]) * cols, cols, yd + i * cols); },
      std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      over_column_blocks(cols, n, [&](int64_t c0, int64_t c1) {
        for (int64_t i = 0; i < n; ++i) {
          float* dst = dx + int64_t(idx[i]) * cols;
          const float* src = dy + i * cols;
          for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
      });
    });
  }
  return y;
}

Tensor scatter_add_rows(const Tensor& src, const int32_t* idx, int64_t n_rows, const Tensor& w) {
  op_check(src.defined() && src.rank() >= 1, "scatter_add_rows", "input must be at least 1-D");
  const int64_t n = src.rows(), cols = src.cols();
  op_check(!w.defined() || w.numel() == n, "scatter_add_rows",
           "weights " + (w.defined() ? w.shape().str() : std::string()) + " must have " +
               std::to_string(n) + " elements (one per source row)");
  check_indices(idx, n, n_rows, "scatter_add_rows");
  Graph& g = current_graph();
  Tensor y = g.zeros(Shape{n_rows, cols}, g.needs_grad({src, w}));
  const float* sd = src.data();
  const float* wd = w.defined() ? w.data() : nullptr;
  float* yd = y.data();
  over_column_blocks(cols, n, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i) {
      float* dst = yd + int64_t(idx[i]) * cols;
      const float* s = sd + i * cols;
      const float wi = wd ? wd[i] : 1.0f;
      for (int64_t c = c0; c < c1; ++c) dst[c] += wi * s[c];
    }
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      float* ds = gg.grad_if_required(src);
      float* dw = w.defined() ? gg.grad_if_required(w) : nullptr;
      parallel_for(
          n,
          [&](int64_t i) {
            const float* dyr = dy + int64_t(idx[i]) * cols;
            if (ds) {
              const float wi = wd ? wd[i] : 1.0f;
              float* d = ds + i * cols;
              for (int64_t c = 0; c < cols; ++c) d[c] += wi * dyr[c];
            }
            if (dw) {
              const float* s = sd + i * cols;
              float dot = 0;
              for (int64_t c = 0; c < cols; ++c) dot += dyr[c] * s[c];
              dw[i] += dot;
            }
          },
          std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)));
    });
  }
  return y;
}

Tensor take_along_rows(const Tensor& x, const int32_t* idx, int64_t k) {
  op_check(x.defined() && x.rank() >= 1, "take_along_rows", "input must be at least 1-D");
  const int64_t rows = x.rows(), cols = x.cols();
  check_indices(idx, rows * k, cols, "take_along_rows");
  Graph& g = current_graph();
  Tensor y = g.empty(Shape{rows, k}, g.needs_grad({x}));
  const float* xd = x.data();
  float* yd = y.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) yd[r * k + j] = xd[r * cols + idx[r * k + j]];
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) dx[r * cols + idx[r * k + j]] += dy[r * k + j];
    });
  }
  return y;
}

}  // namespace bl
