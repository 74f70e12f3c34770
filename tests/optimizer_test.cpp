// Optimizers and gradient clipping against reference formulas written out here
// in double precision (the engine works in float32, hence the small tolerances).
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "expect_error.h"
#include "tensor/gemm.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"
#include "train/grad_clip.h"
#include "train/optimizers/adafactor.h"
#include "train/optimizers/adamw.h"
#include "train/optimizers/lion.h"
#include "train/optimizers/sgd.h"
#include "train/schedule.h"

namespace bl {
namespace {

using test::contains;
using test::error_of;

using Vec = std::vector<double>;

// A parameter plus its double-precision reference copy and reference state.
struct Case {
  std::unique_ptr<Parameter> p;
  Shape shape;
  Vec w, m, v, row, col;
  int64_t t = 0;
  Case(const std::string& name, const Shape& s, Rng& rng)
      : p(std::make_unique<Parameter>(name, s)), shape(s) {
    p->init_normal(rng, 1.0f);
    w.assign(p->data(), p->data() + p->numel());
    m.assign(w.size(), 0.0);
    v.assign(w.size(), 0.0);
  }
  bool decays() const { return shape.rank >= 2; }
  void set_grad(Rng& rng, double scale = 1.0) {
    for (int64_t i = 0; i < p->numel(); ++i) p->grad()[i] = float(rng.normal() * scale);
  }
  Vec grad() const { return Vec(p->grad(), p->grad() + p->numel()); }
};

std::vector<Case> make_cases(Rng& rng) {
  std::vector<Case> cs;
  cs.emplace_back("w2", Shape{3, 5}, rng);      // matmul weight: decays, factored
  cs.emplace_back("w3", Shape{2, 3, 4}, rng);   // rank 3: decays, factored per batch
  cs.emplace_back("bias", Shape{7}, rng);       // 1-D: no decay, unfactored
  cs.emplace_back("big", Shape{131, 67}, rng);  // > 1 chunk, tail not a multiple of 16
  return cs;
}

std::vector<Parameter*> ptrs(std::vector<Case>& cs) {
  std::vector<Parameter*> out;
  for (auto& c : cs) out.push_back(c.p.get());
  return out;
}

::testing::AssertionResult close_to_ref(const std::vector<Case>& cs, double atol, double rtol) {
  for (const auto& c : cs)
    for (int64_t i = 0; i < c.p->numel(); ++i) {
      const double got = c.p->data()[i], ref = c.w[size_t(i)];
      if (!(std::fabs(got - ref) <= atol + rtol * std::fabs(ref)))
        return ::testing::AssertionFailure()
               << c.p->name() << "[" << i << "] = " << got << ", reference " << ref;
    }
  return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------ reference formulas

// torch.optim.AdamW
void ref_adamw(Case& c, const Vec& g, double lr, double b1, double b2, double eps, double wd) {
  ++c.t;
  const double bc1 = 1 - std::pow(b1, double(c.t)), bc2 = 1 - std::pow(b2, double(c.t));
  for (size_t i = 0; i < g.size(); ++i) {
    if (c.decays()) c.w[i] *= 1 - lr * wd;
    c.m[i] = b1 * c.m[i] + (1 - b1) * g[i];
    c.v[i] = b2 * c.v[i] + (1 - b2) * g[i] * g[i];
    c.w[i] -= lr / bc1 * c.m[i] / (std::sqrt(c.v[i]) / std::sqrt(bc2) + eps);
  }
}

// Lion (Chen et al. 2023, Algorithm 2)
void ref_lion(Case& c, const Vec& g, double lr, double b1, double b2, double wd) {
  for (size_t i = 0; i < g.size(); ++i) {
    const double u = b1 * c.m[i] + (1 - b1) * g[i];
    const double sgn = u > 0 ? 1.0 : (u < 0 ? -1.0 : 0.0);
    if (c.decays()) c.w[i] *= 1 - lr * wd;
    c.w[i] -= lr * sgn;
    c.m[i] = b2 * c.m[i] + (1 - b2) * g[i];
  }
}

// torch.optim.SGD (dampening 0); m holds the momentum buffer
void ref_sgd(Case& c, const Vec& g, double lr, double mom, double wd, bool nesterov) {
  ++c.t;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = g[i] + (c.decays() ? wd * c.w[i] : 0.0);
    c.m[i] = c.t == 1 ? d : mom * c.m[i] + d;
    c.w[i] -= lr * (nesterov ? d + mom * c.m[i] : c.m[i]);
  }
}

// HF transformers Adafactor (relative_step=False, scale_parameter=True), written
// the HF way: eps1 added to g^2 before the means; m holds exp_avg if beta1 >= 0.
void ref_adafactor(Case& c, const Vec& g, double lr, double wd, double beta1) {
  const double eps1 = 1e-30, eps2 = 1e-3, d = 1.0, decay_rate = -0.8;
  ++c.t;
  const size_t n = g.size();
  double ss = 0;
  for (double x : c.w) ss += x * x;
  const double lr_t = lr * std::max(eps2, std::sqrt(ss / double(n)));
  const double beta2t = 1.0 - std::pow(double(c.t), decay_rate);
  Vec u(n);
  if (c.shape.rank >= 2) {
    const size_t R = size_t(c.shape[-2]), C = size_t(c.shape[-1]), B = n / (R * C);
    if (c.row.empty()) c.row.assign(B * R, 0.0), c.col.assign(B * C, 0.0);
    for (size_t b = 0; b < B; ++b) {
      for (size_t r = 0; r < R; ++r) {
        double s = 0;
        for (size_t k = 0; k < C; ++k) s += g[(b * R + r) * C + k] * g[(b * R + r) * C + k] + eps1;
        c.row[b * R + r] = beta2t * c.row[b * R + r] + (1 - beta2t) * s / double(C);
      }
      for (size_t k = 0; k < C; ++k) {
        double s = 0;
        for (size_t r = 0; r < R; ++r) s += g[(b * R + r) * C + k] * g[(b * R + r) * C + k] + eps1;
        c.col[b * C + k] = beta2t * c.col[b * C + k] + (1 - beta2t) * s / double(R);
      }
      double rmean = 0;
      for (size_t r = 0; r < R; ++r) rmean += c.row[b * R + r];
      rmean /= double(R);
      for (size_t r = 0; r < R; ++r)
        for (size_t k = 0; k < C; ++k) {
          const size_t i = (b * R + r) * C + k;
          u[i] = g[i] / std::sqrt(c.row[b * R + r] / rmean) / std::sqrt(c.col[b * C + k]);
        }
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      c.v[i] = beta2t * c.v[i] + (1 - beta2t) * (g[i] * g[i] + eps1);
      u[i] = g[i] / std::sqrt(c.v[i]);
    }
  }
  double us = 0;
  for (double x : u) us += x * x;
  const double clip = std::max(1.0, std::sqrt(us / double(n)) / d);
  for (size_t i = 0; i < n; ++i) {
    u[i] = u[i] / clip * lr_t;
    if (beta1 >= 0) {
      c.m[i] = beta1 * c.m[i] + (1 - beta1) * u[i];
      u[i] = c.m[i];
    }
    if (c.decays()) c.w[i] += -wd * lr_t * c.w[i];
    c.w[i] -= u[i];
  }
}

// ------------------------------------------------------------ AdamW

TEST(AdamW, OneStepByHand) {
  // Step 1: m = 0.1 g, v = 0.05 g^2, bias corrections 0.1 and 0.05, so the update
  // is lr * g / (|g| + eps): w1 = w0 * (1 - lr*wd) - lr * g / (|g| + 1e-8).
  Parameter w("w", Shape{1, 2});
  Parameter b("b", Shape{2});
  w.data()[0] = 1.0f, w.data()[1] = -2.0f;
  b.data()[0] = 0.5f, b.data()[1] = 0.25f;
  w.grad()[0] = 0.5f, w.grad()[1] = -0.1f;
  b.grad()[0] = 2.0f, b.grad()[1] = 0.0f;
  AdamW opt({&w, &b}, OptimizerOptions{});  // wd 0.1, betas 0.9/0.95, eps 1e-8
  opt.step(0.01f);
  EXPECT_NEAR(w.data()[0], 1.0 * (1 - 0.01 * 0.1) - 0.01 * 0.5 / (0.5 + 1e-8), 1e-7);
  EXPECT_NEAR(w.data()[1], -2.0 * (1 - 0.01 * 0.1) + 0.01 * 0.1 / (0.1 + 1e-8), 1e-7);
  EXPECT_NEAR(b.data()[0], 0.5 - 0.01 * 2.0 / (2.0 + 1e-8), 1e-7);  // 1-D: no decay
  EXPECT_EQ(b.data()[1], 0.25f);                                    // zero grad: no move
  EXPECT_EQ(opt.steps_taken(), 1);
}

TEST(AdamW, SeveralStepsMatchReference) {
  Rng rng(1);
  auto cs = make_cases(rng);
  OptimizerOptions o;
  o.weight_decay = 0.1f;
  AdamW opt(ptrs(cs), o);
  const float lrs[] = {1e-2f, 5e-3f, 2e-2f, 1e-3f, 1e-2f, 7e-3f};
  Rng grng(2);
  for (float lr : lrs) {
    for (auto& c : cs) c.set_grad(grng, 0.3);
    opt.step(lr);
    for (auto& c : cs) ref_adamw(c, c.grad(), lr, 0.9, 0.95, 1e-8, 0.1);
    ASSERT_TRUE(close_to_ref(cs, 2e-6, 2e-5));
  }
}

TEST(AdamW, WeightDecaySkipsOneDimensionalParams) {
  Parameter w("w", Shape{4, 4}), b("b", Shape{4}), n("norm", Shape{4});
  w.fill(1.0f), b.fill(1.0f), n.fill(1.0f);
  AdamW opt({&w, &b, &n}, OptimizerOptions{});  // zero grads: only decay can move them
  for (int i = 0; i < 3; ++i) opt.step(0.1f);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(w.data()[i], std::pow(1 - 0.1 * 0.1, 3), 1e-6);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(b.data()[i], 1.0f);
    EXPECT_EQ(n.data()[i], 1.0f);
  }
}

// ------------------------------------------------------------ Lion, SGD, Adafactor

TEST(Lion, MatchesReference) {
  Rng rng(3);
  auto cs = make_cases(rng);
  OptimizerOptions o;
  o.weight_decay = 0.5f;
  Lion opt(ptrs(cs), o);  // betas default 0.9 / 0.99
  Rng grng(4);
  for (float lr : {1e-2f, 3e-3f, 1e-2f, 2e-3f}) {
    for (auto& c : cs) c.set_grad(grng);
    opt.step(lr);
    for (auto& c : cs) ref_lion(c, c.grad(), lr, 0.9, 0.99, 0.5);
    ASSERT_TRUE(close_to_ref(cs, 1e-6, 1e-6));
  }
}

TEST(SGD, MatchesReference) {
  for (bool nesterov : {false, true}) {
    Rng rng(5);
    auto cs = make_cases(rng);
    OptimizerOptions o;
    o.weight_decay = 0.01f;
    o.momentum = 0.9f;
    o.nesterov = nesterov;
    SGD opt(ptrs(cs), o);
    Rng grng(6);
    for (float lr : {0.1f, 0.05f, 0.1f, 0.02f}) {
      for (auto& c : cs) c.set_grad(grng);
      opt.step(lr);
      for (auto& c : cs) ref_sgd(c, c.grad(), lr, 0.9, 0.01, nesterov);
      ASSERT_TRUE(close_to_ref(cs, 2e-6, 2e-6)) << "nesterov " << nesterov;
    }
  }
  // momentum 0: plain w -= lr * (g + wd*w), no state
  Parameter w("w", Shape{2, 1});
  w.data()[0] = 1.0f, w.data()[1] = 2.0f;
  w.grad()[0] = 0.5f, w.grad()[1] = -1.0f;
  OptimizerOptions o;
  o.momentum = 0.0f;
  o.weight_decay = 0.1f;
  SGD plain({&w}, o);
  plain.step(0.1f);
  EXPECT_NEAR(w.data()[0], 1.0 - 0.1 * (0.5 + 0.1 * 1.0), 1e-7);
  EXPECT_NEAR(w.data()[1], 2.0 - 0.1 * (-1.0 + 0.1 * 2.0), 1e-7);
  EXPECT_EQ(plain.state_floats(), 0);
}

TEST(Adafactor, MatchesReference) {
  for (double beta1 : {-1.0, 0.9}) {  // -1: no first moment (the default)
    Rng rng(7);
    auto cs = make_cases(rng);
    OptimizerOptions o;
    o.weight_decay = 0.1f;
    if (beta1 >= 0) o.beta1 = float(beta1);
    Adafactor opt(ptrs(cs), o);
    EXPECT_EQ(opt.has_first_moment(), beta1 >= 0);
    Rng grng(8);
    int step = 0;
    for (float lr : {0.1f, 0.05f, 0.1f, 0.02f, 0.08f}) {
      // a small gradient scale on the last steps exercises the unclipped branch
      for (auto& c : cs) c.set_grad(grng, step++ < 3 ? 1.0 : 0.01);
      opt.step(lr);
      for (auto& c : cs) ref_adafactor(c, c.grad(), lr, 0.1, beta1);
      ASSERT_TRUE(close_to_ref(cs, 1e-6, 1e-5)) << "beta1 " << beta1 << " step " << step;
    }
  }
}

TEST(Adafactor, FactoredStateIsSmall) {
  Parameter w("w", Shape{64, 32}), b("b", Shape{32});
  Adafactor opt({&w, &b});
  EXPECT_EQ(opt.state_floats(), 64 + 32 + 32);  // row + col stats, 1-D second moment
}

// Each optimizer drives an ill-conditioned quadratic towards its minimum.
// L = 0.5 * sum_i a_i (w_i - t_i)^2, a_i in [0.1, 10].
class Quadratic : public ::testing::TestWithParam<std::string> {};

TEST_P(Quadratic, LossFallsByALargeFactor) {
  const std::string name = GetParam();
  Rng rng(11);
  Parameter w("w", Shape{16, 24}), b("b", Shape{24});
  w.init_normal(rng, 1.0f);
  b.init_normal(rng, 1.0f);
  std::vector<Parameter*> ps{&w, &b};
  std::vector<Vec> a(2), tgt(2);
  for (size_t k = 0; k < 2; ++k)
    for (int64_t i = 0; i < ps[k]->numel(); ++i) {
      a[k].push_back(std::pow(10.0, 2.0 * rng.uniform() - 1.0));
      tgt[k].push_back(rng.normal());
    }
  auto loss_and_grad = [&] {
    double l = 0;
    for (size_t k = 0; k < 2; ++k)
      for (int64_t i = 0; i < ps[k]->numel(); ++i) {
        const double d = ps[k]->data()[i] - tgt[k][size_t(i)];
        l += 0.5 * a[k][size_t(i)] * d * d;
        ps[k]->grad()[i] = float(a[k][size_t(i)] * d);
      }
    return l;
  };
  OptimizerOptions o;
  o.weight_decay = 0.0f;  // decay would bias the minimum away from t
  float lr = 0.05f;
  if (name == "sgd") lr = 0.05f;       // stable for a_max = 10 with momentum 0.9
  if (name == "lion") lr = 0.05f;      // sign steps: needs sum(lr) > max distance
  if (name == "adafactor") lr = 0.5f;  // the step is scaled by RMS(w) ~ 1
  auto opt = make_optimizer(name, ps, o);
  const int steps = 400;
  const LrSchedule sched = make_schedule("cosine", {lr, 10, steps, 0.01f});
  const double l0 = loss_and_grad();
  double l = l0;
  for (int s = 0; s < steps; ++s) {
    opt->step(sched.lr_at(s));
    l = loss_and_grad();
  }
  EXPECT_LT(l, l0 / 100.0) << name << ": " << l0 << " -> " << l;
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, Quadratic,
                         ::testing::Values("adamw", "lion", "adafactor", "sgd"));

// ------------------------------------------------------------ state, threads, bookkeeping

class StateRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(StateRoundTrip, ReproducesTheNextStepExactly) {
  const std::string name = GetParam();
  OptimizerOptions o;
  if (name == "adafactor") o.beta1 = 0.9f;  // include the optional first moment
  Rng rng(21);
  auto cs = make_cases(rng);
  auto opt = make_optimizer(name, ptrs(cs), o);
  Rng grng(22);
  for (int s = 0; s < 3; ++s) {
    for (auto& c : cs) c.set_grad(grng);
    opt->step(0.01f);
  }
  const NamedBuffers saved = opt->state();
  const int64_t steps = opt->steps_taken();
  EXPECT_EQ(steps, 3);
  // A second model (fresh parameters, same weights) restored from the checkpoint.
  std::vector<std::unique_ptr<Parameter>> copy;
  std::vector<Parameter*> copy_ptrs;
  for (auto& c : cs) {
    copy.push_back(std::make_unique<Parameter>(c.p->name(), c.p->shape()));
    std::memcpy(copy.back()->data(), c.p->data(), sizeof(float) * size_t(c.p->numel()));
    copy_ptrs.push_back(copy.back().get());
  }
  auto restored = make_optimizer(name, copy_ptrs, o);
  restored->load_state(saved, steps);
  EXPECT_EQ(restored->steps_taken(), 3);
  for (size_t k = 0; k < cs.size(); ++k) {
    cs[k].set_grad(grng);
    std::memcpy(copy[k]->grad(), cs[k].p->grad(), sizeof(float) * size_t(cs[k].p->numel()));
  }
  opt->step(0.007f);
  restored->step(0.007f);
  for (size_t k = 0; k < cs.size(); ++k)
    for (int64_t i = 0; i < cs[k].p->numel(); ++i)
      ASSERT_EQ(cs[k].p->data()[i], copy[k]->data()[i])
          << name << " " << cs[k].p->name() << "[" << i << "]";
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, StateRoundTrip,
                         ::testing::Values("adamw", "lion", "adafactor", "sgd"));

TEST(Optimizer, LoadStateErrors) {
  Rng rng(31);
  auto cs = make_cases(rng);
  AdamW adam(ptrs(cs));
  NamedBuffers st = adam.state();
  EXPECT_EQ(st.size(), cs.size() * 3);  // exp_avg, exp_avg_sq, step per param
  EXPECT_EQ(st[0].first, "w2.exp_avg");

  Lion lion(ptrs(cs));
  EXPECT_TRUE(contains(error_of([&] { lion.load_state(st, 0); }), "unknown buffer"));
  NamedBuffers missing(st.begin() + 1, st.end());
  EXPECT_TRUE(contains(error_of([&] { adam.load_state(missing, 0); }), "w2.exp_avg"));
  NamedBuffers wrong = st;
  wrong[0].second.pop_back();
  EXPECT_TRUE(contains(error_of([&] { adam.load_state(wrong, 0); }), "expected 15"));
  EXPECT_THROW(adam.load_state(st, -1), std::invalid_argument);
}

TEST(Optimizer, FactoryAndBookkeeping) {
  Parameter w("w", Shape{2, 2}), b("b", Shape{2});
  for (const auto& n : optimizer_names()) EXPECT_EQ(make_optimizer(n, {&w, &b})->name(), n);
  const std::string e = error_of([&] { make_optimizer("adagrad", {&w}); });
  EXPECT_TRUE(contains(e, "adagrad") && contains(e, "adamw") && contains(e, "lion") &&
              contains(e, "adafactor") && contains(e, "sgd"))
      << e;
  // Tied weights passed twice are updated once.
  Parameter tied("tied", Shape{2, 2});
  tied.fill(1.0f);
  for (int i = 0; i < 4; ++i) tied.grad()[i] = 1.0f;
  OptimizerOptions o;
  o.momentum = 0.0f;
  o.weight_decay = 0.0f;
  SGD sgd({&tied, &tied}, o);
  EXPECT_EQ(sgd.params().size(), 1u);
  sgd.step(0.5f);
  EXPECT_EQ(tied.data()[0], 0.5f);
  // Two different parameters with one name would make checkpoints ambiguous.
  Parameter w_again("w", Shape{2});
  EXPECT_THROW(AdamW({&w, &w_again}), std::invalid_argument);
  EXPECT_THROW(sgd.step(-1.0f), std::invalid_argument);
  EXPECT_THROW(sgd.step(NAN), std::invalid_argument);
  // zero_grad clears every gradient
  sgd.zero_grad();
  EXPECT_EQ(tied.grad()[3], 0.0f);
}

TEST(Optimizer, FrozenParamsAreSkipped) {
  Parameter w("w", Shape{2, 2}), f("frozen", Shape{2, 2});
  w.fill(1.0f), f.fill(1.0f);
  for (int i = 0; i < 4; ++i) w.grad()[i] = f.grad()[i] = 1.0f;
  AdamW opt({&w, &f});
  f.set_trainable(false);
  opt.step(0.1f);
  EXPECT_LT(w.data()[0], 1.0f);
  EXPECT_EQ(f.data()[0], 1.0f);
  const NamedBuffers st = opt.state();
  for (const auto& [n, v] : st) {
    if (n == "frozen.step") {
      EXPECT_EQ(v[0], 0.0f);
    } else if (n == "w.step") {
      EXPECT_EQ(v[0], 1.0f);
    }
  }
}

TEST(Optimizer, ThreadCountDoesNotChangeResults) {
  for (const auto& name : optimizer_names()) {
    std::vector<std::vector<float>> result;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      Rng rng(41);
      Parameter big("big", Shape{300, 333}), bias("bias", Shape{333});
      big.init_normal(rng, 1.0f), bias.init_normal(rng, 1.0f);
      auto opt = make_optimizer(name, {&big, &bias});
      Rng grng(42);
      for (int s = 0; s < 3; ++s) {
        for (int64_t i = 0; i < big.numel(); ++i) big.grad()[i] = float(grng.normal());
        for (int64_t i = 0; i < bias.numel(); ++i) bias.grad()[i] = float(grng.normal());
        opt->step(0.01f);
      }
      result.emplace_back(big.data(), big.data() + big.numel());
    }
    EXPECT_EQ(result[0], result[1]) << name;
  }
  set_num_threads(1);
}

// ------------------------------------------------------------ gradient norm / clipping

TEST(GradClip, NormAndClipByHand) {
  Parameter a("a", Shape{2}), b("b", Shape{1, 1}), frozen("frozen", Shape{1});
  a.grad()[0] = 3.0f, a.grad()[1] = 4.0f;
  b.grad()[0] = 12.0f;
  frozen.grad()[0] = 100.0f;
  frozen.set_trainable(false);  // frozen params have no grad and do not count
  const std::vector<Parameter*> ps{&a, &b, &frozen, &a};  // `a` tied: counted once
  EXPECT_DOUBLE_EQ(global_grad_norm(ps), 13.0);
  // below the threshold: untouched
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 20.0), 13.0);
  EXPECT_EQ(a.grad()[0], 3.0f);
  // torch: coef = max_norm / (norm + 1e-6)
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 1.0), 13.0);
  const double coef = 1.0 / (13.0 + 1e-6);
  EXPECT_FLOAT_EQ(a.grad()[0], float(3.0 * coef));
  EXPECT_FLOAT_EQ(a.grad()[1], float(4.0 * coef));
  EXPECT_FLOAT_EQ(b.grad()[0], float(12.0 * coef));
  EXPECT_NEAR(global_grad_norm(ps), 1.0, 1e-6);
  // max_norm <= 0 disables clipping
  b.grad()[0] = 50.0f;
  EXPECT_GT(clip_grad_norm(ps, 0.0), 49.0);
  EXPECT_EQ(b.grad()[0], 50.0f);
}

TEST(GradClip, NonFiniteNormReturnedAsIs) {
  Parameter a("a", Shape{3});
  a.grad()[0] = 1.0f, a.grad()[1] = NAN, a.grad()[2] = 2.0f;
  EXPECT_TRUE(std::isnan(clip_grad_norm({&a}, 1.0)));
  EXPECT_EQ(a.grad()[0], 1.0f);  // untouched: the trainer stops the run
  a.grad()[1] = INFINITY;
  EXPECT_TRUE(std::isinf(clip_grad_norm({&a}, 1.0)));
  EXPECT_EQ(a.grad()[2], 2.0f);
}

TEST(GradClip, LargeTensorsAnyThreadCount) {
  Parameter big("big", Shape{700, 500});
  Rng rng(51);
  double ref = 0;
  for (int64_t i = 0; i < big.numel(); ++i) {
    big.grad()[i] = float(rng.normal());
    ref += double(big.grad()[i]) * big.grad()[i];
  }
  set_num_threads(1);
  const double n1 = global_grad_norm({&big});
  set_num_threads(2);
  const double n2 = global_grad_norm({&big});
  set_num_threads(1);
  EXPECT_EQ(n1, n2);
  EXPECT_NEAR(n1, std::sqrt(ref), 1e-9 * std::sqrt(ref));
}

}  // namespace
}  // namespace bl
