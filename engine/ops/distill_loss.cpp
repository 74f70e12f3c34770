// Distillation loss: a fused temperature-KL op (row log-sum-exps, analytic
// backward) combined with the existing cross_entropy op, so the hard-label
// part is the very kernel plain training uses.
#include "ops/distill_loss.h"

#include <algorithm>
#include <cmath>

#include "ops/check.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

// log sum_j exp(x_j / T), stable: the max is taken out first.
float lse_over_t(const float* x, int64_t v, float inv_t) {
  float m = x[0];
  for (int64_t j = 1; j < v; ++j) m = std::max(m, x[j]);
  float s = 0.0f;
  for (int64_t j = 0; j < v; ++j) s += std::exp((x[j] - m) * inv_t);
  return m * inv_t + std::log(s);
}

}  // namespace

Tensor distill_kl(const Tensor& student, const Tensor& teacher, const Tokens& targets,
                  float temperature) {
  op_check(student.defined() && student.rank() >= 1, "distill_kl",
           "student logits must be at least 1-D");
  op_check(teacher.defined() && teacher.shape() == student.shape(), "distill_kl",
           "teacher logits " + (teacher.defined() ? teacher.shape().str() : std::string("(none)")) +
               " do not match student logits " + student.shape().str() +
               " (teacher and student need the same vocabulary)");
  op_check(std::isfinite(temperature) && temperature > 0.0f, "distill_kl",
           "temperature must be > 0, got " + std::to_string(temperature));
  const int64_t rows = student.rows(), v = student.cols();
  op_check(v > 0, "distill_kl", "vocab size (last dim of logits) must be > 0");
  op_check(targets.numel() == rows && (targets.data || rows == 0), "distill_kl",
           "targets " + targets.shape.str() + " do not match logits " + student.shape().str());
  Graph& g = current_graph();
  Tensor loss = g.empty(Shape{1}, g.needs_grad({student}));
  // Rows without a target (< 0) are padding, as in cross_entropy: skipped.
  int64_t count = 0;
  const int32_t* tg = arena_targets(targets, rows, v, "distill_kl", nullptr, &count);
  const float inv_t = 1.0f / temperature;
  float* lse_s = g.alloc(std::max<int64_t>(rows, 1));
  float* lse_t = g.alloc(std::max<int64_t>(rows, 1));
  const int64_t nc = loss_chunks(rows, v);
  double* part = g.alloc_as<double>(nc);
  const float* xs = student.data();
  const float* xt = teacher.data();
  parallel_for(nc, [&](int64_t c) {
    const int64_t r0 = c * rows / nc, r1 = (c + 1) * rows / nc;
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      if (tg[r] < 0) continue;
      const float* s = xs + r * v;
      const float* t = xt + r * v;
      const float ls = lse_over_t(s, v, inv_t), lt = lse_over_t(t, v, inv_t);
      lse_s[r] = ls;
      lse_t[r] = lt;
      // sum_j p_t (log p_t - log p_s), log p = x / T - lse.
      double kl = 0.0;
      for (int64_t j = 0; j < v; ++j) {
        const float lpt = t[j] * inv_t - lt;
        kl += double(std::exp(lpt)) * (double(lpt) - (double(s[j] * inv_t) - double(ls)));
      }
      acc += kl;
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
      float* dx = current_graph().grad(student);
      const float scale = float(double(dy[0]) / (double(temperature) * double(count)));
      // d KL / d s_j = (p_s,j - p_t,j) / T, over the counted rows.
      parallel_for(
          rows,
          [&](int64_t r) {
            if (tg[r] < 0) return;
            const float* s = xs + r * v;
            const float* t = xt + r * v;
            float* d = dx + r * v;
            for (int64_t j = 0; j < v; ++j)
              d[j] +=
                  (std::exp(s[j] * inv_t - lse_s[r]) - std::exp(t[j] * inv_t - lse_t[r])) * scale;
          },
          std::max<int64_t>(1, 8192 / v));
    });
  }
  return loss;
}

Tensor distill_loss(const Tensor& student, const Tensor& teacher, const Tokens& targets,
                    float temperature, float alpha, DistillParts* parts) {
  op_check(std::isfinite(temperature) && temperature > 0.0f, "distill_loss",
           "temperature must be > 0, got " + std::to_string(temperature));
  op_check(alpha >= 0.0f && alpha <= 1.0f, "distill_loss",
           "alpha must be in [0, 1], got " + std::to_string(alpha));
  Tensor ce, kl;
  if (alpha > 0.0f) {
    ce = cross_entropy(student, targets);
  } else {
    NoGradGuard no_grad;  // reported only
    ce = cross_entropy(student, targets);
  }
  if (alpha < 1.0f) {
    kl = distill_kl(student, teacher, targets, temperature);
  } else {
    NoGradGuard no_grad;
    kl = distill_kl(student, teacher, targets, temperature);
  }
  if (parts) {
    parts->ce = double(ce.item());
    parts->kl = double(kl.item());
  }
  // Pure ends stay single terms: alpha = 1 is exactly cross_entropy.
  if (alpha == 1.0f) return ce;
  const float w = (1.0f - alpha) * temperature * temperature;
  if (alpha == 0.0f) return scale(kl, w);
  return add(scale(ce, alpha), scale(kl, w));
}

}  // namespace bl
