// Finite-difference gradient check shared by every op and component test.
//
// The scalar checked is L = sum_i w_i * y_i with fixed random weights w, so every
// output element contributes with a distinct weight. The analytic gradient of L
// comes from Graph::backward; the numeric one from central differences
//   (L(x + h) - L(x - h)) / 2h, with L accumulated in double.
// The engine is float32, so the tolerance is justified by float32 error terms:
// truncation error O(h^2 * |f'''|) ~ 1e-4 at h = 1e-2 for O(1) inputs, and
// rounding error ~ eps_f32 * |L| / h ~ 1e-5 * |L|. We accept
//   |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
// with atol = 2e-3, rtol = 2e-2 by default: two orders of magnitude under the
// size of a real bug (a wrong sign, factor or missing term gives O(1) errors).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tensor/graph.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"

namespace bl::test {

struct GradCheckOptions {
  double h = 1e-2;
  double atol = 2e-3;
  double rtol = 2e-2;
  int max_checks_per_input = 64;  // random subset of elements for big inputs
  uint64_t seed = 7;
  /// Piecewise functions (MoE top-k routing): an element whose one-sided
  /// differences disagree by more than this is at a kink (the step flipped a
  /// discrete choice), where no finite difference is valid; it is skipped.
  /// 0 = never skip. At most max_kink_fraction of the checked elements may be.
  double kink_tol = 0;
  double max_kink_fraction = 0.1;
};

/// Builds a Parameter filled with N(0, std) values (a persistent test input).
inline std::unique_ptr<Parameter> make_input(const std::string& name, const Shape& s, Rng& rng,
                                             float std = 1.0f) {
  auto p = std::make_unique<Parameter>(name, s);
  p->init_normal(rng, std);
  return p;
}

/// f builds the output from the inputs' tensors. Returns "" on success, else a report.
inline ::testing::AssertionResult grad_check(const std::function<Tensor()>& f,
                                             const std::vector<Parameter*>& inputs,
                                             GradCheckOptions opt = {}) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(opt.seed);
  std::vector<double> w;
  auto loss_of = [&](const Tensor& y) {
    if (w.empty()) {
      w.resize(size_t(y.numel()));
      for (auto& v : w) v = rng.normal();
    }
    double l = 0;
    for (int64_t i = 0; i < y.numel(); ++i) l += w[size_t(i)] * double(y.data()[i]);
    return l;
  };
  // Analytic gradients.
  for (Parameter* p : inputs) p->zero_grad();
  Tensor y = f();
  loss_of(y);
  if (!y.requires_grad()) return ::testing::AssertionFailure() << "output does not require grad";
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) gy[i] = float(w[size_t(i)]);
  g.run_tape();
  g.clear();
  std::vector<std::vector<float>> analytic;
  for (Parameter* p : inputs) {
    if (!p->grad())
      return ::testing::AssertionFailure() << "input '" << p->name() << "' is frozen (no gradient)";
    analytic.emplace_back(p->grad(), p->grad() + p->numel());
  }

  // Numeric gradients on a subset of elements.
  NoGradGuard ng;
  int64_t checked = 0, kinks = 0;
  for (size_t pi = 0; pi < inputs.size(); ++pi) {
    Parameter* p = inputs[pi];
    const int64_t n = p->numel();
    std::vector<int64_t> idx;
    if (n <= opt.max_checks_per_input) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int c = 0; c < opt.max_checks_per_input; ++c)
        idx.push_back(int64_t(rng.below(uint64_t(n))));
    }
    for (int64_t i : idx) {
      float orig = p->data()[i];
      p->data()[i] = float(orig + opt.h);
      double lp = loss_of(f());
      g.clear();
      p->data()[i] = float(orig - opt.h);
      double lm = loss_of(f());
      g.clear();
      p->data()[i] = orig;
      ++checked;
      if (opt.kink_tol > 0) {
        const double l0 = loss_of(f());
        g.clear();
        if (std::abs((lp - l0) - (l0 - lm)) / opt.h > opt.kink_tol) {
          ++kinks;
          continue;
        }
      }
      double num = (lp - lm) / (2 * opt.h);
      double ana = analytic[pi][size_t(i)];
      double err = std::abs(num - ana);
      if (err > opt.atol + opt.rtol * std::max(std::abs(num), std::abs(ana)))
        return ::testing::AssertionFailure()
               << "input '" << p->name() << "' element " << i << ": analytic " << ana << " numeric "
               << num << " (abs err " << err << ")";
    }
  }
  if (double(kinks) > opt.max_kink_fraction * double(checked))
    return ::testing::AssertionFailure()
           << kinks << " of " << checked << " checked elements sat at kinks";
  return ::testing::AssertionSuccess();
}

}  // namespace bl::test
