#include "ops/matmul.h"

#include <omp.h>

#include <algorithm>
#include <string>

#include "ops/activation.h"
#include "ops/check.h"
#include "ops/column_sums.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

// Shared checks of linear-like ops: x (..., in), w (out, in), b (out) or undefined.
void check_linear(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  op_check(w.rank() == 2, op, "weight must be 2-D, got " + w.shape().str());
  op_check(x.cols() == w.dim(1), op,
           "input " + x.shape().str() + " does not fit weight " + w.shape().str());
  op_check(!b.defined() || b.numel() == w.dim(0), op,
           "bias size must be " + std::to_string(w.dim(0)));
}

// dW += dyᵀ x and db += column sums of dy, for y = x Wᵀ + b over n rows.
void linear_param_grads(Graph& g, const float* dy, const float* x, int64_t n, const Tensor& w,
                        const Tensor& b, int64_t ldx = 0) {
  const int64_t out = w.dim(0), in = w.dim(1);
  if (w.requires_grad())
    gemm(true, false, out, in, n, 1.0f, dy, out, x, ldx > 0 ? ldx : in, 1.0f, g.grad(w), in);
  if (b.defined() && b.requires_grad()) {
    // One contiguous column range per thread (a single sequential pass on
    // one thread), rows summed in order within each: the result does not
    // depend on the thread count.
    float* db = g.grad(b);
    const int64_t nt = omp_in_parallel() ? 1 : num_threads();
    const int64_t cols = std::max<int64_t>(16, (out + nt - 1) / nt + 15) / 16 * 16;
    parallel_for((out + cols - 1) / cols,
                 [&](int64_t c) {
                   const int64_t j0 = c * cols, j1 = std::min(out, j0 + cols);
                   for (int64_t j = j0; j < j1; j += kColumnSumWidth)
                     add_column_sums(dy + j, out, n, std::min(kColumnSumWidth, j1 - j), db + j);
                 },
                 1);
  }
}

// The output of a linear-like op on x: x's shape with the last dim w's rows;
// a residual, when given, must have that shape.
Tensor linear_output(Graph& g, const char* op, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& r) {
  Shape ys = x.shape();
  ys[-1] = w.dim(0);
  op_check(!r.defined() || r.shape() == ys, op,
           "residual " + (r.defined() ? r.shape().str() : std::string()) +
               " must have the output's shape " + ys.str());
  return g.empty(ys, g.needs_grad({x, w, b, r}));
}

// The residual's gradient is dy itself: it takes dy's buffer when it has none
// yet (called after the op's last read of dy), else dy is added to its own.
void residual_grad(Graph& g, const Tensor& r, const Tensor& y) {
  if (!r.defined() || !r.requires_grad() || g.share_grad(r, y)) return;
  float* dr = g.grad(r);
  const float* dy = y.grad();
  const int64_t c = y.cols();
  parallel_for(
      y.rows(),
      [&](int64_t i) {
        float* __restrict d = dr + i * c;
        const float* __restrict s = dy + i * c;
        for (int64_t j = 0; j < c; ++j) d[j] += s[j];
      },
      64);
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual) {
  check_linear("linear", x, w, b);
  const int64_t n = x.rows(), in = w.dim(1), out = w.dim(0);
  Graph& g = current_graph();
  Tensor y = linear_output(g, "linear", x, w, b, residual);
  linear_gemm(n, out, in, x.data(), w.data(), b.defined() ? b.data() : nullptr, y.data(),
              residual.defined() ? residual.data() : nullptr);
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      if (x.requires_grad()) {
        bool fresh;
        float* dx = gg.grad_for_overwrite(x, fresh);
        gemm(false, false, n, in, out, 1.0f, dy, out, w.data(), in, fresh ? 0.0f : 1.0f, dx, in);
      }
      linear_param_grads(gg, dy, x.data(), n, w, b);
      residual_grad(gg, residual, y);
    });
  }
  return y;
}

Tensor gelu_linear(const Tensor& h, const Tensor& w, const Tensor& b, const Tensor& residual) {
  check_linear("gelu_linear", h, w, b);
  const int64_t n = h.rows(), in = w.dim(1), out = w.dim(0);
  Graph& g = current_graph();
  Tensor y = linear_output(g, "gelu_linear", h, w, b, residual);
  // GELU(h) is kept for dW; GELU'(h) only when h needs a gradient.
  // At a stride the GEMM reads in place, the forward takes GELU(h) as its A
  // and dW's product as its B without copying them.
  const int64_t ld = gemm_row_stride(in);
  float* act = g.alloc(n * ld);
  float* dact = y.requires_grad() && h.requires_grad() ? g.alloc(n * ld) : nullptr;
  gelu_rows(h.data(), n, in, act, dact, ld);
  linear_gemm(n, out, in, act, w.data(), b.defined() ? b.data() : nullptr, y.data(),
              residual.defined() ? residual.data() : nullptr, ld);
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      if (h.requires_grad()) {  // dh = (dy W) ∘ GELU'(h), the product gated in its epilogue
        bool fresh;
        float* dh = gg.grad_for_overwrite(h, fresh);
        gemm_gated(false, false, n, in, out, 1.0f, dy, out, w.data(), in, dact, ld,
                   fresh ? 0.0f : 1.0f, dh, in);
      }
      linear_param_grads(gg, dy, act, n, w, b, ld);
      residual_grad(gg, residual, y);
    });
  }
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_b) {
  op_check(a.rank() >= 2 && b.rank() >= 2, "matmul", "operands must be at least 2-D");
  const int64_t m = a.dim(-2), k = a.dim(-1);
  const int64_t bk = trans_b ? b.dim(-1) : b.dim(-2);
  const int64_t n = trans_b ? b.dim(-2) : b.dim(-1);
  op_check(
      k == bk, "matmul",
      "inner dims differ: " + a.shape().str() + " x " + b.shape().str() + (trans_b ? "ᵀ" : ""));
  const int64_t batch = a.numel() / (m * k);
  const bool shared_b = b.rank() == 2;
  op_check(shared_b || b.numel() / (k * n) == batch, "matmul",
           "batch dims differ: " + a.shape().str() + " x " + b.shape().str());
  Graph& g = current_graph();
  Shape ys = a.shape();
  ys[-1] = n;
  Tensor y = g.empty(ys, g.needs_grad({a, b}));
  const int64_t bstride = shared_b ? 0 : k * n;
  const int64_t ldb = trans_b ? k : n;
  if (shared_b) {
    gemm(false, trans_b, batch * m, n, k, 1.0f, a.data(), k, b.data(), ldb, 0.0f, y.data(), n);
  } else {
    parallel_for(batch, [&](int64_t i) {
      gemm(false, trans_b, m, n, k, 1.0f, a.data() + i * m * k, k, b.data() + i * bstride, ldb,
           0.0f, y.data() + i * m * n, n);
    });
  }
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      if (a.requires_grad()) {
        float* da = gg.grad(a);
        // dA = dY op(B)ᵀ
        if (shared_b)
          gemm(false, !trans_b, batch * m, k, n, 1.0f, dy, n, b.data(), ldb, 1.0f, da, k);
        else
          parallel_for(batch, [&](int64_t i) {
            gemm(false, !trans_b, m, k, n, 1.0f, dy + i * m * n, n, b.data() + i * bstride, ldb,
                 1.0f, da + i * m * k, k);
          });
      }
      if (b.requires_grad()) {
        float* db = gg.grad(b);
        // dB = Aᵀ dY  (or its transpose when b is stored transposed)
        if (shared_b) {
          if (trans_b)
            gemm(true, false, n, k, batch * m, 1.0f, dy, n, a.data(), k, 1.0f, db, k);
          else
            gemm(true, false, k, n, batch * m, 1.0f, a.data(), k, dy, n, 1.0f, db, n);
        } else {
          parallel_for(batch, [&](int64_t i) {
            if (trans_b)
              gemm(true, false, n, k, m, 1.0f, dy + i * m * n, n, a.data() + i * m * k, k, 1.0f,
                   db + i * bstride, k);
            else
              gemm(true, false, k, n, m, 1.0f, a.data() + i * m * k, k, dy + i * m * n, n, 1.0f,
                   db + i * bstride, n);
          });
        }
      }
    });
  }
  return y;
}

}  // namespace bl
