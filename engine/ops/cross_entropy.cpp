#include "ops/cross_entropy.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
using ArrMap = Eigen::Map<Eigen::ArrayXf>;
using CArrMap = Eigen::Map<const Eigen::ArrayXf>;

// Fixed chunking (independent of the thread count) so the double loss sum is
// reproducible bit for bit whatever the number of threads.
constexpr int64_t kMaxChunks = 64;
int64_t n_chunks(int64_t rows, int64_t v) {
  const int64_t per = std::max<int64_t>(1, 8192 / std::max<int64_t>(v, 1));
  return std::clamp<int64_t>(rows / per, 1, kMaxChunks);
}
}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tokens& targets) {
  op_check(logits.defined() && logits.rank() >= 1, "cross_entropy", "logits must be at least 1-D");
  const int64_t rows = logits.rows(), v = logits.cols();
  op_check(targets.numel() == rows && (targets.data || rows == 0), "cross_entropy",
           "targets " + targets.shape.str() + " do not match logits " + logits.shape().str() +
               " (need one target per row)");
  op_check(v > 0, "cross_entropy", "vocab size (last dim of logits) must be > 0");
  Graph& g = current_graph();
  Tensor loss = g.empty(Shape{1}, g.needs_grad({logits}));

  // Validate and copy targets into the arena: the backward pass must not depend
  // on the caller's buffer (data loaders reuse theirs).
  int32_t* tg = g.alloc_as<int32_t>(std::max<int64_t>(rows, 1));
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets.data[r];
    if (t >= v)
      op_check(false, "cross_entropy",
               "target " + std::to_string(t) + " at index " + std::to_string(r) +
                   " is out of range for vocab size V = " + std::to_string(v) + " (logits " +
                   logits.shape().str() + ")");
    tg[r] = t;
    count += t >= 0;
  }

  float* lse = g.alloc(std::max<int64_t>(rows, 1));
  const int64_t nc = n_chunks(rows, v);
  double* part = g.alloc_as<double>(nc);
  const float* x = logits.data();
  parallel_for(nc, [&](int64_t c) {
    const int64_t r0 = c * rows / nc, r1 = (c + 1) * rows / nc;
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      if (tg[r] < 0) continue;
      CArrMap xr(x + r * v, v);
      const float m = xr.maxCoeff();
      const float l = m + std::log((xr - m).exp().sum());
      lse[r] = l;
      acc += double(l) - double(xr[tg[r]]);
    }
    part[c] = acc;
  });
  double total = 0.0;
  for (int64_t c = 0; c < nc; ++c) total += part[c];
  loss.data()[0] = count > 0 ? float(total / double(count)) : 0.0f;

  if (loss.requires_grad() && count > 0) {
    g.on_backward([=] {
      const float* dy = loss.grad();
      if (!dy) return;
      float* dx = current_graph().grad(logits);
      const float scale = float(double(dy[0]) / double(count));
      const float* x = logits.data();
      // dlogits = (softmax - onehot) * dy / count on non-ignored rows.
      parallel_for(
          rows,
          [&](int64_t r) {
            const int32_t t = tg[r];
            if (t < 0) return;
            CArrMap xr(x + r * v, v);
            ArrMap dr(dx + r * v, v);
            dr += (xr - lse[r]).exp() * scale;
            dr[t] -= scale;
          },
          std::max<int64_t>(1, 8192 / v));
    });
  }
  return loss;
}

}  // namespace bl
